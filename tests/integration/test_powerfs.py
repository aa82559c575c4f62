"""powerfs itself (tests/powerfs): what a power cut keeps and what it drops.

The power-loss test of pigeond is only as good as this model, so each rule
of tests/powerfs/README.md is checked here on a real mount: data is durable
after the file's fsync/fdatasync, a name after its directory's fsync, and
nothing else survives the cut.
"""

import errno
import os

import pytest

from powerfs_mount import fsync_dir, powerfs_factory  # noqa: F401 (a fixture)


def write_file(path, data, sync=False):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        if sync:
            os.fdatasync(fd)
    finally:
        os.close(fd)


def read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture
def fs(powerfs_factory):  # noqa: F811
    return powerfs_factory().mount()


def cut_and_remount(fs):
    fs.cut()
    fs.remount()
    return fs.mountpoint


def test_unsynced_data_is_lost_synced_data_kept(fs):
    m = fs.mountpoint
    write_file(m / "kept", b"synced bytes", sync=True)
    write_file(m / "lost", b"never synced")
    fsync_dir(m)  # both names are durable; only one file's bytes are
    assert read(m / "lost") == b"never synced"  # reads see unsynced writes
    m = cut_and_remount(fs)
    assert read(m / "kept") == b"synced bytes"
    assert read(m / "lost") == b""


def test_fsync_keeps_data_not_the_name(fs):
    m = fs.mountpoint
    write_file(m / "f", b"data", sync=True)
    m = cut_and_remount(fs)
    assert not (m / "f").exists(), "a name survived without its directory's fsync"


def test_fsync_of_the_directory_keeps_the_name(fs):
    m = fs.mountpoint
    write_file(m / "f", b"data", sync=True)
    fsync_dir(m)
    m = cut_and_remount(fs)
    assert read(m / "f") == b"data"
    # and a second cut on the remounted image changes nothing
    m = cut_and_remount(fs)
    assert read(m / "f") == b"data"
    assert sorted(os.listdir(m)) == ["f"]


def test_only_synced_writes_survive_overwrite_and_truncate(fs):
    m = fs.mountpoint
    write_file(m / "f", b"0123456789", sync=True)
    fsync_dir(m)
    fd = os.open(m / "f", os.O_WRONLY)
    os.pwrite(fd, b"AB", 2)
    os.fsync(fd)
    os.pwrite(fd, b"XY", 6)  # not synced
    os.ftruncate(fd, 8)  # not synced
    os.close(fd)
    assert read(m / "f") == b"01AB45XY"
    m = cut_and_remount(fs)
    assert read(m / "f") == b"01AB456789"


def test_large_writes_at_offsets(fs):
    """Writes the kernel splits into several requests, and sparse extension."""
    m = fs.mountpoint
    blob = os.urandom(700 * 1024)
    fd = os.open(m / "big", os.O_RDWR | os.O_CREAT, 0o600)
    os.pwrite(fd, blob, 0)
    os.pwrite(fd, b"tail", 2 * 1024 * 1024)
    os.fdatasync(fd)
    os.pwrite(fd, b"lost", 100)
    os.close(fd)
    fsync_dir(m)
    m = cut_and_remount(fs)
    data = read(m / "big")
    assert len(data) == 2 * 1024 * 1024 + 4
    assert data[:len(blob)] == blob
    assert data[len(blob):2 * 1024 * 1024] == bytes(2 * 1024 * 1024 - len(blob))
    assert data[-4:] == b"tail"


def test_rename_over_with_directory_fsync(fs):
    """RocksDB's CURRENT: temp file, fsync, rename over, fsync the directory."""
    m = fs.mountpoint
    write_file(m / "CURRENT", b"MANIFEST-000001\n", sync=True)
    fsync_dir(m)
    write_file(m / "000002.dbtmp", b"MANIFEST-000002\n", sync=True)
    os.rename(m / "000002.dbtmp", m / "CURRENT")
    fsync_dir(m)
    m = cut_and_remount(fs)
    assert read(m / "CURRENT") == b"MANIFEST-000002\n"
    assert sorted(os.listdir(m)) == ["CURRENT"]


def test_rename_over_without_directory_fsync_is_undone(fs):
    m = fs.mountpoint
    write_file(m / "CURRENT", b"old\n", sync=True)
    fsync_dir(m)
    write_file(m / "tmp", b"new\n", sync=True)
    os.rename(m / "tmp", m / "CURRENT")
    assert read(m / "CURRENT") == b"new\n"
    m = cut_and_remount(fs)
    assert read(m / "CURRENT") == b"old\n"
    assert sorted(os.listdir(m)) == ["CURRENT"]


def test_rename_across_directories(fs):
    m = fs.mountpoint
    os.mkdir(m / "src")
    os.mkdir(m / "dst")
    os.mkdir(m / "dst2")
    write_file(m / "src" / "a", b"A", sync=True)
    write_file(m / "src" / "b", b"B", sync=True)
    for d in ("src", "dst", "dst2"):
        fsync_dir(m / d)
    fsync_dir(m)
    # both directories synced: moved
    os.rename(m / "src" / "a", m / "dst" / "a")
    fsync_dir(m / "dst")
    fsync_dir(m / "src")
    # only the source synced: the name is in neither directory
    os.rename(m / "src" / "b", m / "dst2" / "b")
    fsync_dir(m / "src")
    m = cut_and_remount(fs)
    assert os.listdir(m / "src") == []
    assert os.listdir(m / "dst") == ["a"]
    assert read(m / "dst" / "a") == b"A"
    assert os.listdir(m / "dst2") == []


def test_unsynced_unlink_is_undone(fs):
    m = fs.mountpoint
    write_file(m / "f", b"still here", sync=True)
    fsync_dir(m)
    os.unlink(m / "f")
    assert not (m / "f").exists()
    m = cut_and_remount(fs)
    assert read(m / "f") == b"still here"
    os.unlink(m / "f")
    fsync_dir(m)
    m = cut_and_remount(fs)
    assert not (m / "f").exists()


def test_nested_mkdir_needs_every_parent_synced(fs):
    m = fs.mountpoint
    os.makedirs(m / "a" / "b")
    write_file(m / "a" / "b" / "f", b"x", sync=True)
    fsync_dir(m / "a" / "b")
    fsync_dir(m / "a")  # the root is not synced: a, and all below it, are gone
    m = cut_and_remount(fs)
    assert os.listdir(m) == []

    os.makedirs(m / "a" / "b")
    write_file(m / "a" / "b" / "f", b"x", sync=True)
    fsync_dir(m / "a" / "b")
    fsync_dir(m)  # a/ is not synced: a stays, empty
    m = cut_and_remount(fs)
    assert os.listdir(m) == ["a"]
    assert os.listdir(m / "a") == []

    os.mkdir(m / "a" / "b")
    write_file(m / "a" / "b" / "f", b"x", sync=True)
    fsync_dir(m / "a" / "b")
    fsync_dir(m / "a")
    m = cut_and_remount(fs)
    assert read(m / "a" / "b" / "f") == b"x"


def test_unsynced_rmdir_is_undone(fs):
    m = fs.mountpoint
    os.mkdir(m / "d")
    fsync_dir(m)
    os.rmdir(m / "d")
    m = cut_and_remount(fs)
    assert (m / "d").is_dir()


def test_links_symlinks_and_modes(fs):
    m = fs.mountpoint
    write_file(m / "f", b"linked", sync=True)
    os.link(m / "f", m / "g")
    os.symlink("f", m / "s")
    os.chmod(m / "f", 0o640)
    os.mkfifo(m / "p")
    fd = os.open(m / "f", os.O_RDONLY)
    os.fsync(fd)  # the mode change
    os.close(fd)
    fsync_dir(m)
    assert os.stat(m / "f").st_nlink == 2
    m = cut_and_remount(fs)
    assert read(m / "g") == b"linked"
    assert os.stat(m / "f").st_ino == os.stat(m / "g").st_ino
    assert os.stat(m / "f").st_nlink == 2
    assert os.stat(m / "f").st_mode & 0o7777 == 0o640
    assert os.readlink(m / "s") == "f"
    assert read(m / "s") == b"linked"
    assert sorted(os.listdir(m)) == ["f", "g", "p", "s"]


def test_unlinked_open_file_and_fallocate(fs):
    m = fs.mountpoint
    fd = os.open(m / "f", os.O_RDWR | os.O_CREAT, 0o600)
    os.unlink(m / "f")
    os.write(fd, b"anonymous")
    os.posix_fallocate(fd, 0, 64 * 1024)  # mode 0: the size grows
    os.fsync(fd)
    # (fstat of an unlinked file is ESTALE in libfuse's path API: README.md, "Limits")
    assert os.lseek(fd, 0, os.SEEK_END) == 64 * 1024
    assert os.pread(fd, 9, 0) == b"anonymous"
    os.close(fd)
    fsync_dir(m)
    m = cut_and_remount(fs)
    assert os.listdir(m) == []


def test_everything_fails_with_eio_after_the_cut(fs):
    m = fs.mountpoint
    write_file(m / "f", b"x", sync=True)
    fsync_dir(m)
    fd = os.open(m / "f", os.O_RDWR)
    fs.cut()
    for op in (lambda: os.write(fd, b"y"), lambda: os.fsync(fd), lambda: os.stat(m / "f"),
               lambda: os.listdir(m), lambda: os.open(m / "g", os.O_CREAT | os.O_WRONLY)):
        with pytest.raises(OSError) as e:
            op()
        assert e.value.errno == errno.EIO, e.value
    with pytest.raises(OSError) as e:
        os.close(fd)  # the descriptor is gone all the same
    assert e.value.errno == errno.EIO, e.value
    m = cut_and_remount(fs)
    assert read(m / "f") == b"x"
