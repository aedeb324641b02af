"""The `dco` runtime package: pure decision core first, thin AWS adapters in `dco.aws`."""

__version__ = "0.1.0"
