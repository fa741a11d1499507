"""The README's Python examples run as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_opens_with_setup_and_test_commands():
    first_block = re.search(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands[0].startswith("bash scripts/install.sh")
    assert commands[1] == ".venv/bin/python -m pytest -q"


def test_readme_python_examples_run():
    blocks = python_blocks()
    assert blocks, "README.md has no python example"
    for block in blocks:
        scope: dict = {}
        exec(compile(block, str(README), "exec"), scope)
    assert scope["restored"].shape == (1, 3, 64, 64)
