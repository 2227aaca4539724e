"""Does seqapps install on the platforms its users train on? Asks pip, not a machine.

Resolves the project's dependencies here (`pip install --dry-run --report`), keeps the
packages whose wheel here is platform-specific (not `*-none-any.whl`), and asks pip,
for each of them, each platform and each Python version, for a binary wheel:

    pip download --no-deps --only-binary=:all: --platform P --python-version V NAME

(a whole-set `--only-binary=:all:` resolution fails on pure-Python sources such as
`promise`, which install anywhere). Only the wheel's metadata is fetched. A direct
dependency is asked for with the project's version range, any other by name. Writes
`benchmarks/results/platforms.{json,md}`.

    python benchmarks/platforms.py [--python 3.10 3.11 3.12 3.13]
"""

import argparse
import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

sys.path.insert(0, str(Path(__file__).parent))
from report import save  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# pip expands a macOS tag to the older versions it implies, but not a manylinux tag:
# those are listed, every glibc up to 2.28 (Debian 10, Ubuntu 18.10, RHEL 8).
MANYLINUX = ["manylinux_2_28", "manylinux_2_27", "manylinux_2_24", "manylinux_2_17", "manylinux2014", "manylinux1"]
PLATFORMS = {
    "Linux x86_64": [f"{tag}_x86_64" for tag in MANYLINUX],
    "Linux aarch64": [f"{tag}_aarch64" for tag in MANYLINUX if tag != "manylinux1"],
    "macOS arm64": ["macosx_14_0_arm64"],
    "Windows x86_64": ["win_amd64"],
}


def resolved_here() -> dict[str, str]:
    """name -> wheel file name of every package the project's install resolves to here."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
            + ["--report", str(report), str(ROOT)],
            check=True,
        )
        installs = json.loads(report.read_text())["install"]
    return {
        canonicalize_name(item["metadata"]["name"]): item["download_info"]["url"].rsplit("/", 1)[-1]
        for item in installs
    }


def direct_requirements() -> dict[str, str]:
    """name -> requirement string of the project's own install_requires."""
    import configparser

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = [line.strip() for line in config["options"]["install_requires"].splitlines()]
    requirements = [Requirement(line) for line in lines if line and not line.startswith("#")]
    return {canonicalize_name(r.name): f"{r.name}{r.specifier}" for r in requirements}


def has_wheel(requirement: str, platform_tags: list[str], python: str) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--only-binary=:all:", "--quiet"]
            + [arg for tag in platform_tags for arg in ("--platform", tag)]
            + ["--python-version", python, "--target", tmp, "--report", f"{tmp}/r.json", requirement],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            return False, done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"
        install = json.loads(Path(f"{tmp}/r.json").read_text())["install"][0]
        return True, install["download_info"]["url"].rsplit("/", 1)[-1]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", nargs="+", default=["3.10", "3.11", "3.12", "3.13"])
    args = parser.parse_args()

    wheels = resolved_here()
    direct = direct_requirements()
    # A source distribution built here (promise) is pure Python, and installs anywhere.
    specific = sorted(
        name for name, wheel in wheels.items() if wheel.endswith(".whl") and not wheel.endswith("-none-any.whl")
    )
    print(f"{len(wheels)} packages resolved here, {len(specific)} with platform-specific wheels: {', '.join(specific)}")
    questions = [(name, platform, python) for name in specific for platform in PLATFORMS for python in args.python]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda q: has_wheel(direct.get(q[0], q[0]), PLATFORMS[q[1]], q[2]), questions))
    missing = [(q, why) for q, (ok, why) in zip(questions, answers, strict=True) if not ok]
    for (name, platform, python), why in missing:
        print(f"no wheel: {name} on {platform}, Python {python}: {why}")
    rows = [
        {
            "platform": platform,
            "python": python,
            "packages checked": len(specific),
            "without a binary wheel": ", ".join(q[0] for q, _ in missing if q[1:] == (platform, python)) or "none",
        }
        for platform in PLATFORMS
        for python in args.python
    ]
    save(
        "platforms",
        rows,
        [(key, key, "{}") for key in ("platform", "python", "packages checked", "without a binary wheel")],
        settings={
            "checked": "pip install --dry-run --no-deps --only-binary=:all: --platform P --python-version V",
            "platform tags": PLATFORMS,
            "resolved on": "Linux x86_64, Python " + ".".join(map(str, sys.version_info[:2])),
            "platform-specific packages": specific,
        },
    )


if __name__ == "__main__":
    main()
