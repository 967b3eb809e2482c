"""Errors about the input data. The CLI turns `DatasetError` into exit code 2."""


class DatasetError(ValueError):
    """The input dataset is missing, malformed or unsupported.

    The message names the file, the field and what was expected, so a user can fix the
    input without reading our code.
    """

    exit_code = 2
