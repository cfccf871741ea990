"""Every error onebit raises for something the user can fix derives from onebit.errors.OnebitError
(and still from the built-in class callers already catch)."""

from __future__ import annotations

import pytest

from onebit.cli import UserError as CliUserError
from onebit.data.idx import IDXFormatError
from onebit.data.sources import ChecksumError, DatasetNotFoundError, DownloadError
from onebit.deploy.trace import ConversionError
from onebit.errors import OnebitError, UserError
from onebit.runtime import FormatError
from onebit.train.config import ConfigError


@pytest.mark.parametrize("cls, builtin", [
    (FormatError, ValueError), (ConversionError, ValueError), (ConfigError, ValueError),
    (IDXFormatError, ValueError), (ChecksumError, ValueError),
    (DatasetNotFoundError, FileNotFoundError), (DownloadError, OSError), (UserError, Exception),
])
def test_user_facing_errors_share_one_base(cls, builtin):
    assert issubclass(cls, OnebitError) and issubclass(cls, builtin)
    with pytest.raises(OnebitError, match="the fix"):
        raise cls("the fix")


def test_the_cli_and_the_package_share_one_user_error():
    assert CliUserError is UserError
