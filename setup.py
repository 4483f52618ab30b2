"""kisscluster: highly available KVM virtual machines on two nodes."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def tree(top: str) -> list[tuple[str, list[str]]]:
    """data_files entries that install the directory `top` under share/kisscluster."""
    entries = []
    for directory in [HERE / top, *sorted(p for p in (HERE / top).rglob("*") if p.is_dir())]:
        files = sorted(
            str(f.relative_to(HERE))
            for f in directory.iterdir()
            if f.is_file() and f.suffix != ".pyc"
        )
        if files:
            entries.append((f"share/kisscluster/{directory.relative_to(HERE)}", files))
    return entries


setup(
    name="kisscluster",
    version="0.1.0",
    description="Highly available KVM VMs on two nodes: LVM, DRBD, systemd, Salt, git",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11.2",  # Debian 12's Python: the nodes run it, CI tests under it
    packages=find_packages(include=["kisscluster", "kisscluster.*"]),
    include_package_data=True,
    scripts=sorted(str(p.relative_to(HERE)) for p in (HERE / "scripts").iterdir() if p.is_file()),
    data_files=tree("salt") + tree("orchestrate") + tree("pillar") + tree("vm-config"),
    install_requires=[
        "salt>=3007.15,<3008",
        "PyYAML>=6.0,<7",
        "Jinja2>=3.1,<4",
        "GitPython>=3.1.40,<4",
    ],
    extras_require={
        "test": [
            "pytest>=8,<10",
            "pytest-salt-factories>=1.0.5,<2",
            "hypothesis>=6.100,<7",
            "ruff>=0.15,<1",
            "mypy>=1.10,<3",
            "types-PyYAML>=6",
        ],
    },
)
