import os

from thermos.monitoring.disk import DiskCollector, NullDiskCollector, du


def fill(path, files, size):
    os.makedirs(path, exist_ok=True)
    for i in range(files):
        with open(os.path.join(path, "f%d" % i), "wb") as fp:
            fp.write(os.urandom(size))


def test_du_counts_allocated_bytes_of_the_whole_tree(tmp_path):
    assert du(str(tmp_path)) == 0
    fill(str(tmp_path / "a" / "b" / "c"), 3, 100_000)
    fill(str(tmp_path / "d"), 2, 50_000)
    assert 400_000 <= du(str(tmp_path)) < 450_000


def test_hard_links_count_once_and_symlinks_are_not_followed(tmp_path):
    fill(str(tmp_path / "real"), 1, 200_000)
    os.link(tmp_path / "real" / "f0", tmp_path / "hardlink")
    outside = tmp_path.parent / (tmp_path.name + "_outside")
    fill(str(outside), 1, 500_000)
    os.symlink(outside, tmp_path / "link_to_outside")
    assert 200_000 <= du(str(tmp_path)) < 250_000


def test_a_deep_tree_is_walked_in_small_steps_and_only_complete_walks_count(tmp_path):
    for i in range(200):
        fill(str(tmp_path / ("d%03d" % i) / "sub"), 1, 4096)
    collector = DiskCollector(str(tmp_path))
    steps = 0
    while not collector.step(budget=0.0):
        steps += 1
        assert collector.value == 0  # nothing half-counted is ever reported
        assert steps < 10_000
    assert steps > 10
    assert collector.value == du(str(tmp_path))


def test_a_new_walk_waits_for_the_interval(tmp_path):
    now = [100.0]
    collector = DiskCollector(str(tmp_path), interval=60.0, clock=lambda: now[0])
    assert collector.step() is True and collector.value == 0
    fill(str(tmp_path), 1, 100_000)
    assert collector.due() is False and collector.step() is False and collector.value == 0
    now[0] += 61
    assert collector.step() is True and collector.value >= 100_000


def test_collection_off_never_walks(tmp_path):
    fill(str(tmp_path), 1, 100_000)
    collector = NullDiskCollector(str(tmp_path))
    assert collector.step() is False and collector.collect() == 0 and collector.value == 0
    assert not collector.enabled


def test_a_vanished_root_counts_zero(tmp_path):
    assert DiskCollector(str(tmp_path / "missing")).collect() == 0
