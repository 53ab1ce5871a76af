"""`thermos gc` on tasks whose directories a hostile task user replaced with symlinks.

Each test plants one escape, runs `thermos gc --delete-metadata --delete-logs --force` on the task
(as root on CI) and checks that the target outside is unchanged byte for byte, owners and modes
included, and that the refusal is one line naming the path.
"""

import os
import shutil

import pytest

from tests.cli.helpers import thermos
from tests.gc.helpers import make_outside, snapshot
from tests.monitoring.fixtures import make_task

GC = ("gc", "--delete-metadata", "--delete-logs", "--force")


@pytest.fixture
def roots(tmp_path):
    """Two checkpoint roots: `root` where GC runs and `victim`, another root it must not touch."""
    root = str(tmp_path / "root")
    victim = str(tmp_path / "victim")
    make_task(root, "plain", state="finished", data_bytes=4096)
    make_task(victim, "precious", state="finished", data_bytes=4096)
    outside = make_outside(str(tmp_path / "outside"))
    return root, victim, outside


def untouched(*trees):
    return [snapshot(tree) for tree in trees]


def test_a_symlinked_task_directory_is_skipped_whole(capsys, roots):
    root, victim, outside = roots
    make_task(root, "evil", state="finished")
    shutil.rmtree(os.path.join(root, "checkpoints", "evil"))
    os.symlink(os.path.join(victim, "checkpoints", "precious"), os.path.join(root, "checkpoints", "evil"))
    before = untouched(victim, outside)

    result = thermos(capsys, root, *GC, "evil")

    assert result.code == 1
    assert result.err == ("thermos gc: error: skipping the rest of task evil: %s/checkpoints/evil is a "
                          "symlink or not a directory: not followed (task evil left in place)\n" % root)
    assert untouched(victim, outside) == before
    assert os.path.islink(os.path.join(root, "checkpoints", "evil"))


def test_a_symlinked_runner_checkpoint_is_unlinked_and_its_header_never_used(capsys, roots):
    root, victim, outside = roots
    make_task(root, "evil", state="finished")
    runner = os.path.join(root, "checkpoints", "evil", "runner")
    os.unlink(runner)
    os.symlink(os.path.join(victim, "checkpoints", "precious", "runner"), runner)  # names precious's sandbox
    before = untouched(victim, outside)

    result = thermos(capsys, root, *GC, "evil")

    assert result.code == 0, result.err
    assert not os.path.lexists(os.path.join(root, "checkpoints", "evil"))
    assert not os.path.exists(os.path.join(root, "tasks", "finished", "evil"))
    assert untouched(victim, outside) == before


def test_a_symlinked_sandbox_is_skipped_with_one_line(capsys, roots):
    root, victim, outside = roots
    sandbox = make_task(root, "evil", state="finished")
    shutil.rmtree(sandbox)
    os.symlink(outside, sandbox)
    before = untouched(victim, outside)

    result = thermos(capsys, root, *GC, "evil")

    assert result.code == 1
    assert result.err == "thermos gc: error: skipping the rest of task evil: %s is a symlink: not " \
        "followed, left in place\n" % sandbox
    assert untouched(victim, outside) == before


def test_a_symlinked_log_directory_is_kept_out_of_both_data_and_log_deletion(capsys, roots):
    root, victim, outside = roots
    sandbox = make_task(root, "evil", state="finished", data_bytes=1000)
    shutil.rmtree(os.path.join(sandbox, ".logs"))
    os.symlink(outside, os.path.join(sandbox, ".logs"))
    before = untouched(victim, outside)

    result = thermos(capsys, root, *GC, "evil")

    assert result.code == 1
    assert "%s/.logs is a symlink: not followed, left in place" % sandbox in result.err
    assert result.err.count("\n") == 1
    assert not os.path.exists(os.path.join(sandbox, "data.bin"))  # the data step ran first
    assert untouched(victim, outside) == before


def test_symlinks_planted_inside_a_sandbox_are_unlinked_never_followed(capsys, roots):
    root, victim, outside = roots
    sandbox = make_task(root, "evil", state="finished", data_bytes=1000)
    os.makedirs(os.path.join(sandbox, "deep", "er"))
    os.symlink(outside, os.path.join(sandbox, "deep", "er", "to_outside"))
    os.symlink(os.path.join(victim, "checkpoints"), os.path.join(sandbox, "to_victim"))
    os.symlink(os.path.join(outside, "secret"), os.path.join(sandbox, ".logs", "process_0", "0", "stdout.1"))
    before = untouched(victim, outside)

    result = thermos(capsys, root, *GC, "evil", "plain")

    assert result.code == 0, result.err
    assert not os.path.lexists(sandbox)
    assert result.out.count("    freed ") == 2
    assert untouched(victim, outside) == before


def test_a_header_naming_a_path_outside_an_untrusted_root_is_refused(capsys, tmp_path, roots):
    """A checkpoint root others can write (like a Mesos run) may only name sandboxes inside it."""
    root, victim, outside = roots
    make_task(root, "evil", state="finished", sandbox=os.path.join(victim, "sandboxes", "precious"))
    os.chmod(os.path.join(root, "checkpoints"), 0o777)
    before = untouched(victim, outside)

    result = thermos(capsys, root, *GC, "evil")

    assert result.code == 1
    assert result.err == "thermos gc: error: skipping the rest of task evil: %s/sandboxes/precious is " \
        "outside every trusted root (%s)\n" % (victim, root)
    assert untouched(victim, outside) == before


def test_a_plain_task_is_collected_with_the_bytes_freed(capsys, roots):
    root, _, _ = roots
    result = thermos(capsys, root, *GC, "plain")
    assert result.code == 0 and result.err == ""
    freed = [line for line in result.out.splitlines() if line.startswith("    freed ")]
    assert len(freed) == 1 and freed[0].endswith("KiB")
    assert not os.path.exists(os.path.join(root, "sandboxes", "plain"))
    assert not os.path.exists(os.path.join(root, "checkpoints", "plain"))


def test_a_sandbox_root_reached_through_a_symlink_needs_sandbox_root(capsys, tmp_path):
    """Like /var/run -> /run: the operator names the directory, and only then is its link followed."""
    root = str(tmp_path / "root")
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    sandbox = make_task(root, "elsewhere", state="finished", sandbox=str(link / "elsewhere"), data_bytes=100)
    result = thermos(capsys, root, *GC, "elsewhere")
    assert result.code == 1 and "%s is a symlink or not a directory: not followed" % link in result.err
    assert os.path.exists(os.path.join(sandbox, "data.bin"))
    result = thermos(capsys, root, *GC, "--sandbox-root", str(link), "elsewhere")
    assert result.code == 0, result.err
    assert not os.path.exists(real / "elsewhere") and real.is_dir()
