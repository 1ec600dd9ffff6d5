"""Turn a device option (``cpu``, ``cuda``, ``cuda:1``, ``mps``) into a torch device, or a
one-line :class:`~emoca.errors.UsageError` saying why it is not available here."""

from __future__ import annotations

from typing import Any

from emoca.errors import UsageError

__all__ = ["resolve_device"]


def resolve_device(spec: Any = None) -> Any:
    """``torch.device`` for ``spec`` (None: CPU), checked against this machine's torch."""
    import torch

    if spec is None:
        return torch.device("cpu")
    if isinstance(spec, torch.device):
        dev = spec
    else:
        try:
            dev = torch.device(str(spec))
        except (RuntimeError, ValueError):
            raise UsageError(f"--device {spec!r}: not a torch device (use cpu, cuda, cuda:N "
                             "or mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else \
                f"built for CUDA {torch.version.cuda}, but no GPU is visible"
            raise UsageError(f"--device {spec}: CUDA is not available (torch "
                             f"{torch.__version__} is {build}); install a CUDA build of torch "
                             "(see the README) or use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"--device {spec}: only {torch.cuda.device_count()} CUDA "
                             "device(s) here")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UsageError(f"--device {spec}: Apple's MPS is not available on this machine; "
                             "use --device cpu")
    elif dev.type != "cpu":
        raise UsageError(f"--device {spec}: unsupported device type {dev.type!r} (use cpu, "
                         "cuda or mps)")
    return dev
