"""Exit 1 unless every requirements.lock pin that applies here is what is installed (the lock was honoured)."""

import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

lock = Path(__file__).resolve().parents[1] / "requirements.lock"
wrong, checked = [], 0
for line in lock.read_text().splitlines():
    if not line or line.startswith((" ", "#")):
        continue
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate():
        continue
    try:
        installed = version(req.name)
    except PackageNotFoundError:
        continue  # pinned for an extra or a platform this install does not use
    checked += 1
    pinned = Version(next(iter(req.specifier)).version)
    if Version(installed).release != pinned.release or Version(installed).pre != pinned.pre:  # +cpu is the same
        wrong.append(f"{canonicalize_name(req.name)} {installed} (lock: {pinned})")
print(f"requirements.lock: {checked} installed packages checked, {len(wrong)} differ")
for item in wrong:
    print("  ", item)
sys.exit(1 if wrong else 0)
