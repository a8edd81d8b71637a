"""What a run ran on: git commit, package versions and hardware, as MLflow run tags.

Collected without importing torch (slow): package versions come from installed metadata, the GPU from
torch only if the caller already imported it, else from ``nvidia-smi`` when present.
"""

from __future__ import annotations

import getpass
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGES = ("miniml", "torch", "transformers", "mlflow")


def run_environment(cwd: Path | None = None) -> dict[str, str]:
    """Tags describing code, packages and machine for a run started in ``cwd`` (default: current folder)."""
    tags = {
        "python.version": platform.python_version(),
        "hw.platform": platform.platform(terse=True),
        "hw.cpu": cpu_model(),
        "hw.cores": str(os.cpu_count() or 0),
        "hw.ram_gb": f"{ram_bytes() / 2**30:.1f}",
        "hw.gpu": gpu_names() or "none",
        "mlflow.user": _user(),
        "mlflow.source.name": Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python",
    }
    tags.update({f"version.{name}": package_version(name) for name in PACKAGES})
    commit = git_commit(cwd)
    if commit:
        tags["mlflow.source.git.commit"] = commit
        tags["git.dirty"] = str(git_dirty(cwd)).lower()
    return tags


def package_version(name: str) -> str:
    if name == "miniml":
        from miniml.version import __version__

        return __version__
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def ram_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def gpu_names() -> str:
    """Comma-separated GPU names, or an empty string without a GPU."""
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                return ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
            return ""
        except Exception:  # a broken CUDA install must not stop a run from being tracked
            return ""
    if shutil.which("nvidia-smi") is None:
        return ""
    out = _run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], None)
    return ", ".join(line.strip() for line in out.splitlines() if line.strip())


def git_commit(cwd: Path | None = None) -> str:
    """HEAD's commit hash if ``cwd`` is inside a git work tree, else an empty string."""
    return _run(["git", "rev-parse", "HEAD"], cwd).strip()


def git_dirty(cwd: Path | None = None) -> bool:
    return bool(_run(["git", "status", "--porcelain", "--untracked-files=no"], cwd).strip())


def _run(cmd: list[str], cwd: Path | None) -> str:
    """Output of a short informational command; empty when it is missing, fails or hangs."""
    if shutil.which(cmd[0]) is None:
        return ""
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout if done.returncode == 0 else ""


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
