"""The README's examples are the real files and what the commands really print.

Each checked ```console block is replayed in a fresh directory: every `$ command` runs under
bash (paths such as /tmp/ops mapped to a temporary directory), and its output is compared with
the lines under it after normalising what differs from run to run (times, pids, host, user).
`[exit N]` gives the exit status (0 when absent); a `... [y/N]? y` line is the answer fed to
the command; `$ cat FILE` of a file that does not exist yet writes the lines under it to FILE.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

from tests.cli.helpers import REPO
from thermos.common.ckpt import CheckpointDispatcher
from thermos.gen.thermos.ttypes import ProcessState
from thermos.testing.wait import wait_until

README = os.path.join(REPO, "README.md")
MAPPED = ("/tmp/demo", "/tmp/ops", "/tmp/nope")  # README paths -> directories of the test
CHECKED = (  # the first command of each checked block
    "thermos --root /tmp/demo run --sandbox /tmp/demo/sandbox --task_id ordered_1 examples/ordered.thermos",
    "cat bad.thermos",
    "thermos --root /tmp/ops run --sandbox /tmp/ops/sandbox --task_id hello_1 examples/hello_world.thermos",
)
TIME = re.compile(r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                  r"[ \d]\d \d\d:\d\d:\d\d \d{4}\b")
ANSWER = re.compile(r"\[y/N\]\? (\w+)$")


def readme() -> str:
    with open(README) as fp:
        return fp.read()


def console_blocks(text: str) -> list[list[str]]:
    return [block.splitlines() for block in re.findall(r"^```console\n(.*?)^```$", text, re.M | re.S)]


def checked_block(first_command: str) -> list[str]:
    for block in console_blocks(readme()):
        if block and block[0] == "$ " + first_command:
            return block
    raise AssertionError("README has no console block starting with $ %s" % first_command)


def steps(block: list[str]) -> list[tuple[str, list[str], int]]:
    """(command, expected output lines, expected exit status) for each `$ ` line of a block."""
    result: list[tuple[str, list[str], int]] = []
    for line in block:
        if line.startswith("$ "):
            result.append((line[2:], [], 0))
        elif re.fullmatch(r"\[exit \d+\]", line):
            command, output, _ = result[-1]
            result[-1] = (command, output, int(line[6:-1]))
        else:
            result[-1][1].append(line)
    return result


def normalise(line: str) -> str:
    line = TIME.sub("<time>", line)
    line = re.sub(r"pid=\d+", "pid=<pid>", line)
    line = re.sub(r"\[pid: \d+\]", "[pid: <pid>]", line)
    line = re.sub(r"\(runner pid \d+\)", "(runner pid <pid>)", line)
    line = re.sub(r"^(  host:\s+)\S+$", r"\1<host>", line)
    line = re.sub(r"^(  user:\s+)\S+$", r"\1<user>", line)
    line = re.sub(r"^(    user: )\S+", r"\1<user>", line)
    line = re.sub(r"\[owner:\s*[^\]]+\]", "[owner: <user>]", line)
    return line.rstrip()


class Session:
    def __init__(self, base) -> None:
        self.cwd = base / "cwd"
        self.cwd.mkdir()
        os.symlink(os.path.join(REPO, "examples"), self.cwd / "examples")
        self.paths = {path: str(base / os.path.basename(path)) for path in MAPPED}
        self.env = dict(os.environ, PYTHONUNBUFFERED="1",  # stdout and stderr in order, as on a terminal
                        PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
        self.roots: set[str] = set()

    def local(self, text: str) -> str:
        for path, mapped in self.paths.items():
            text = text.replace(path, mapped)
        return text

    def readme_paths(self, text: str) -> str:
        for path, mapped in self.paths.items():
            text = text.replace(mapped, path)
        return text

    def run(self, command: str, expected: list[str], code: int) -> None:
        answers = [m.group(1) for m in map(ANSWER.search, expected) if m]
        if command.startswith("cat ") and not (self.cwd / command[4:]).exists() and "/" not in command:
            (self.cwd / command[4:]).write_text("\n".join(expected) + "\n")  # the README shows the file
            return
        local = self.local(command)
        if local.startswith("thermos "):  # only the roots the README names, never the host's Mesos tasks
            local = "thermos --mesos-root '' " + local[len("thermos "):]
        words = shlex.split(local)
        if "--root" in words:
            self.roots.add(words[words.index("--root") + 1])
        proc = subprocess.run(["bash", "-c", local], cwd=self.cwd, env=self.env, capture_output=False,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120,
                              input="".join(answer + "\n" for answer in answers))
        output = self.readme_paths(proc.stdout)
        for answer in answers:  # a terminal would have echoed the answer typed after the prompt
            output = re.sub(r"\[y/N\]\? (?!%s\n)" % answer, "[y/N]? %s\n" % answer, output, count=1)
        actual = [normalise(line) for line in output.splitlines()]
        assert (proc.returncode, actual) == (code, [normalise(line) for line in expected]), (
            "$ %s\nREADME:\n%s\nreal (exit %d):\n%s" % (command, "\n".join(expected), proc.returncode,
                                                         output))
        if "--daemon" in words and "--task_id" in words:
            self.wait_running(words[words.index("--root") + 1], words[words.index("--task_id") + 1])

    @staticmethod
    def wait_running(root: str, task_id: str) -> None:
        """A daemonized task is shown next: wait (bounded) until its process runs."""
        checkpoint = os.path.join(root, "checkpoints", task_id, "runner")

        def running() -> bool:
            state = CheckpointDispatcher.from_file(checkpoint) if os.path.exists(checkpoint) else None
            return bool(state and state.processes and all(
                runs[-1].state == ProcessState.RUNNING for runs in state.processes.values()))

        wait_until(running, timeout=30)

    def close(self) -> None:
        """Kill whatever a failed session left running."""
        for root in self.roots:
            if os.path.isdir(os.path.join(root, "tasks", "active")):
                subprocess.run([sys.executable, "-m", "thermos.cli.main", "--mesos-root", "", "--root", root,
                                "kill", "--yes", "--wait", "10", ".*"], capture_output=True, timeout=120)


def test_the_readme_copy_of_ordered_thermos_is_the_file():
    with open(os.path.join(REPO, "examples", "ordered.thermos")) as fp:
        example = fp.read()
    match = re.search(r"^```python\n# examples/ordered\.thermos\n(.*?)^```$", readme(), re.M | re.S)
    assert match, "README shows no copy of examples/ordered.thermos"
    assert match.group(1) == example


@pytest.mark.parametrize("first_command", CHECKED)
def test_readme_session(tmp_path, first_command):
    session = Session(tmp_path)
    try:
        for command, expected, code in steps(checked_block(first_command)):
            session.run(command, expected, code)
    finally:
        session.close()
