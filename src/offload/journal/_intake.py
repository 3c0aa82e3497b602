"""The intake log on disk: where an accepted write is durable before the SQLite file has it.

Each journal instance of a process appends its writes (an enqueue, a start mark,
a finish) to a log of its own in the directory ``PATH-intake`` next to the
journal file. A record is copied into a memory-mapped segment file, which puts
it in the operating system's cache of that file at once, with no system call:
it survives SIGKILL of the process (like a commit with ``synchronous=NORMAL``),
not a power loss. The journal's writer thread then applies the records to the
SQLite file in batches and records, in the same transaction, how far it got
(the log's *applied position*, in the ``intake`` table). After a crash another
process replays the records past that position: see :mod:`._writer`.

Segment file ``<log>.<index>``: a 16-byte magic, the owner id of the process
that wrote it (``uint16`` length, UTF-8), then records, each a header (``uint32``
length, ``uint32`` CRC-32 of the data, little-endian) and the data.
The file is allocated in full before it is mapped, so writing into the map can
never fault on a full disk; the unused rest is zeros, and a zero length ends a
segment. A record cut short by a kill fails its CRC and is ignored: its
``append`` never returned. A position (LSN) is ``index << 40 | offset``.

Also here: the *mailbox* of a process (``<owner>.notice``), 8 bytes another
process overwrites when it changes a row this process holds (a cancel from the
dashboard, a take-over), so that this process checks its rows again before it
starts one: see ``SQLiteJournal.start``.
"""

from __future__ import annotations

import binascii
import errno
import mmap
import os
import re
import struct
import threading
from collections.abc import Iterator

#: Bytes of a new segment (a record larger than that gets a segment of its own size). Each
#: thread that writes has a log of its own, so this is per thread (and its next one, made ahead).
SEGMENT_BYTES = 512 * 1024
MAGIC = b"offload-intake1\n"
_HEADER = struct.Struct("<II")
_OWNER = struct.Struct("<H")
_INDEX_SHIFT = 40
_BINARY = getattr(os, "O_BINARY", 0)
# A segment that cannot be allocated for want of room is tried smaller.
_NO_ROOM = (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC))


def intake_dir(path: str) -> str:
    """The intake directory of the journal file ``path``."""
    return path + "-intake"


def position(index: int, offset: int) -> int:
    return (index << _INDEX_SHIFT) | offset


def safe_name(owner: str) -> str:
    """A file name for an owner id (``host:pid:start``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", owner)


class IntakeLog:
    """The segments of one log, appended to by one thread at a time (its owner).

    :meth:`append` takes no lock until a segment is full. The writer thread
    prepares the next segment ahead of time (:meth:`reserve_spare`,
    :meth:`create`, :meth:`add_spare`), so that the append that fills one only
    switches maps, and it unmaps and deletes the old ones (:meth:`retired`,
    :meth:`finished`); those calls and a switch share one small lock.
    """

    def __init__(self, directory: str, name: str, owner: str) -> None:
        self.directory = directory
        self.name = name
        self._head = MAGIC + _owner_header(owner)
        self._map: mmap.mmap | None = None
        self._index = -1
        self._offset = 0
        self._size = 0
        self._reserved = -1  # the highest segment index handed out
        self._spare: tuple[int, mmap.mmap, int] | None = None  # (index, map, size), ready for use
        self._preparing = False
        self._closed_segments: list[tuple[int, int]] = []  # (index, end position), oldest first
        self._retired: list[mmap.mmap] = []  # maps of full segments, to close outside the lock
        self._lock = threading.Lock()
        self._closed = False

    def append(self, data: bytes) -> int:
        """Write one record; return the position after it.

        Raises:
            OSError: a new segment could not be created (disk full, permissions).
        """
        need = _HEADER.size + len(data)
        if self._offset + need > self._size:
            self._next_segment(need)
        start = self._offset
        end = start + need
        assert self._map is not None
        self._map[start + _HEADER.size : end] = data
        self._map[start : start + _HEADER.size] = _HEADER.pack(len(data), binascii.crc32(data))
        self._offset = end
        return (self._index << _INDEX_SHIFT) | end

    def _next_segment(self, need: int) -> None:
        with self._lock:
            if self._closed:
                raise OSError(errno.EBADF, "the intake log is closed")
            spare, self._spare = self._spare, None
            if spare is None or spare[2] < len(self._head) + need:
                if spare is not None:
                    self._retire(spare)
                self._reserved += 1
                spare = (self._reserved, *self.create(self._reserved, need))
            if self._map is not None:
                self._retired.append(self._map)
                self._closed_segments.append((self._index, position(self._index, self._offset)))
            self._index, self._map, self._size = spare
            self._offset = len(self._head)

    def create(self, index: int, need: int = 0) -> tuple[mmap.mmap, int]:
        """Make segment ``index`` (allocated, headed, mapped): (its map, its size).

        A disk that cannot take a full-size segment gets smaller ones, down to the
        size the next record needs.
        """
        least = len(self._head) + need
        size = max(SEGMENT_BYTES, least)
        path = self.segment_path(index)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _BINARY, 0o600)
            try:
                _allocate(fd, size)
                os.write(fd, self._head)
                new = mmap.mmap(fd, size)
            except OSError as exc:
                os.close(fd)
                unlink_quietly(path)
                if exc.errno in _NO_ROOM and size > least:
                    size = max(least, size // 4)
                    continue
                raise
            os.close(fd)  # the map keeps the file open
            return new, size

    def reserve_spare(self) -> int | None:
        """The index to prepare the next segment under, or None: one is ready or on its way, or
        the current segment is less than half full."""
        if self._offset < self._size // 2:
            return None
        with self._lock:
            if self._spare is not None or self._preparing or self._map is None:
                return None
            self._preparing = True
            self._reserved += 1
            return self._reserved

    def add_spare(self, index: int, made: tuple[mmap.mmap, int] | None) -> None:
        """Take a prepared segment (None: preparing it failed)."""
        with self._lock:
            self._preparing = False
            if made is None:
                return
            if index > self._index and self._spare is None and self._map is not None:
                self._spare = (index, *made)
            else:  # an append could not wait for it and made its own, or the log closed
                self._retire((index, *made))

    def _retire(self, spare: tuple[int, mmap.mmap, int]) -> None:
        self._retired.append(spare[1])
        unlink_quietly(self.segment_path(spare[0]))

    def retired(self) -> list[mmap.mmap]:
        """The maps of full segments, to close (outside the lock: unmapping is a system call)."""
        with self._lock:
            maps, self._retired = self._retired, []
        return maps

    def segment_path(self, index: int) -> str:
        return os.path.join(self.directory, f"{self.name}.{index:08d}")

    def finished(self, applied: int) -> list[str]:
        """The paths of the full segments whose records are all applied (position ``applied``):
        the caller deletes them (outside its lock)."""
        done = []
        with self._lock:
            while self._closed_segments and self._closed_segments[0][1] <= applied:
                index, _ = self._closed_segments.pop(0)
                done.append(self.segment_path(index))
        return done

    def close(self) -> None:
        """Unmap: an append from now on fails (delete the segments with :func:`remove_log`)."""
        maps = self.retired()
        with self._lock:
            self._closed = True
            self._size = 0  # an append after closing reaches _next_segment, which refuses it
            if self._map is not None:
                maps.append(self._map)
                self._map = None
            if self._spare is not None:
                maps.append(self._spare[1])
                unlink_quietly(self.segment_path(self._spare[0]))
                self._spare = None
        for old in maps:
            old.close()  # its pages stay in the OS cache of the file, written back as usual
        self._closed_segments = []


def _owner_header(owner: str) -> bytes:
    encoded = owner.encode("utf-8", "backslashreplace")
    return _OWNER.pack(len(encoded)) + encoded


def _allocate(fd: int, size: int) -> None:
    """Give the file ``size`` bytes of real disk space (so a write into its map cannot fault)."""
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is not None:
        fallocate(fd, 0, size)
        return
    chunk = b"\0" * 65536  # no posix_fallocate (macOS, Windows): write the zeros
    left = size
    while left > 0:
        left -= os.write(fd, chunk[: min(left, len(chunk))])
    os.lseek(fd, 0, os.SEEK_SET)


def _segments(directory: str, name: str) -> list[tuple[int, str]]:
    """(index, path) of a log's segment files, oldest first."""
    prefix = name + "."
    found = []
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return []
    for entry in entries:
        if entry.startswith(prefix) and entry[len(prefix) :].isdigit():
            found.append((int(entry[len(prefix) :]), os.path.join(directory, entry)))
    return sorted(found)


def logs(directory: str) -> dict[str, str]:
    """Every log in ``directory`` that has segments: name -> the owner id that wrote it."""
    try:
        entries = sorted(os.listdir(directory))
    except FileNotFoundError:
        return {}
    known = _owners.setdefault(directory, {})
    found: dict[str, str] = {}
    for entry in entries:
        name, _, index = entry.rpartition(".")
        if not index.isdigit() or name in found:
            continue
        owner = known.get(name) or _read_head(os.path.join(directory, entry))
        if owner is not None:
            found[name] = owner
    _owners[directory] = found  # forget the logs that are gone
    return found


# Per directory, log name -> owner id as its segments' header says (it never changes): a
# recovery scan every second reads each header once.
_owners: dict[str, dict[str, str]] = {}


def _read_head(path: str) -> str | None:
    """The owner id in a segment's header, or None (not a segment, or never written to)."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(MAGIC) + _OWNER.size)
            if len(head) < len(MAGIC) + _OWNER.size:
                return None
            (length,) = _OWNER.unpack_from(head, len(MAGIC))
            data = head + f.read(length)
    except OSError:
        return None
    return _parse_head(data)[0]


def _parse_head(data: bytes) -> tuple[str | None, int]:
    """(owner id, where the records start) of a segment's bytes; (None, 0) if it has no header."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + _OWNER.size:
        return None, 0
    (length,) = _OWNER.unpack_from(data, len(MAGIC))
    start = len(MAGIC) + _OWNER.size
    if len(data) < start + length:
        return None, 0
    return data[start : start + length].decode("utf-8", "replace"), start + length


def read_records(directory: str, name: str, after: int) -> Iterator[tuple[int, bytes]]:
    """(position after it, data) of every intact record of a log past position ``after``."""
    after_index, after_offset = after >> _INDEX_SHIFT, after & ((1 << _INDEX_SHIFT) - 1)
    for index, path in _segments(directory, name):
        if index < after_index:
            continue
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue
        owner, first = _parse_head(data)
        if owner is None:
            continue  # never written to (its creation failed)
        offset = max(first, after_offset if index == after_index else 0)
        while offset + _HEADER.size <= len(data):
            length, crc = _HEADER.unpack_from(data, offset)
            end = offset + _HEADER.size + length
            if length == 0 or end > len(data):
                break
            record = data[offset + _HEADER.size : end]
            if binascii.crc32(record) != crc:
                break  # cut short by a kill: its append never returned
            yield position(index, end), record
            offset = end


def remove_log(directory: str, name: str) -> None:
    for _, path in _segments(directory, name):
        unlink_quietly(path)


def unlink_quietly(path: str) -> None:
    """Delete a file that may be gone already."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# -- mailboxes -----------------------------------------------------------------------


def mailbox_path(directory: str, owner: str) -> str:
    return os.path.join(directory, safe_name(owner) + ".notice")


class Mailbox:
    """A process's mailbox, read without a system call: ``token`` changes when another process wrote."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _BINARY, 0o600)
            os.write(fd, bytes(8))
        except FileExistsError:  # another journal instance of this process made it
            fd = os.open(path, os.O_RDWR | _BINARY)
        try:
            self._map = mmap.mmap(fd, 8)
        finally:
            os.close(fd)

    def token(self) -> bytes:
        return self._map[:8]

    def close(self) -> None:
        """Unmap and delete it (its process no longer holds rows through it)."""
        self._map.close()
        unlink_quietly(self.path)


def notify(directory: str, owner: str) -> bool:
    """Tell ``owner``'s process that one of its rows changed; False if it has no mailbox."""
    try:
        fd = os.open(mailbox_path(directory, owner), os.O_WRONLY | _BINARY)
    except OSError:
        return False
    try:
        os.write(fd, os.urandom(8))
    finally:
        os.close(fd)
    return True
