"""One run scaffold for every trainer: DQN and every agent on the runtime, ``fit-vae``, ``fit-world-model``.

A training run needs the same frame around its loop whatever it trains::

    with RunScaffold(path, resume=False, config_yaml=yaml_text, total=cfg.run.total_frames) as run:
        run.on_interrupt(checkpoint)          # SIGINT / SIGTERM: write a last checkpoint, then stop
        run.add_cleanup(runtime.close)        # runs on *any* exit: success, Ctrl-C, any exception
        while ...:
            run.check_interrupt()             # between steps: a SIGINT / SIGTERM stops the run here
            ...
            run.advance(frames)               # progress bar with frames/s
            wall_fps, cpu_fps, _ = rates.measure(frames)  # charts/frames_per_s, charts/cpu_frames_per_s

- The run directory is refused if it already holds a run (:class:`RunExistsError`), unless resuming; a folder left
  by a start that failed before its first checkpoint is reused. One process at a time writes it: the scaffold holds
  an exclusive lock on it for the run's life (:mod:`worldmodels.common.runlock`; the kernel drops it when the
  process dies), and a second writer is refused naming the live one. ``config.yaml`` and ``run.json`` (the command
  and algorithm, :mod:`worldmodels.common.runrecord`) are written there atomically when the run starts; one
  TensorBoard writer and one tqdm bar are opened. How a resume picks its checkpoint and
  config is :mod:`worldmodels.common.resume`.
- SIGINT (Ctrl-C) and SIGTERM (a cluster scheduler) ask the run to stop: the loop finishes the step it is in and
  raises ``KeyboardInterrupt`` at its next :meth:`RunScaffold.check_interrupt`, and the callback given to
  :meth:`RunScaffold.on_interrupt` writes a last checkpoint before the interrupt propagates. Stopping between steps,
  never inside one, keeps a signal out of library internals (an interrupt inside TensorBoard's writer queue can hang
  the writer's close; one inside an optimiser step leaves half-updated weights). A second signal stops at once.
  The interrupt is an :class:`Interrupted` carrying the signal: the command exits with 128 + its number (130 for
  SIGINT, 143 for SIGTERM). Under Ray too: ``agents.runtime.ray_runtime.init_ray`` keeps Ray's handlers out of
  the driver.
- A full disk (:class:`worldmodels.common.atomic.DiskFullError`) and a :class:`RunFailed` (Ray actors lost) end the
  run with no error checkpoint: one would fill the disk again, or lack the lost actors' state.
- Cleanup (actors, servers, the writer, the bar, the signal handler) happens in ``__exit__`` for every way out,
  not only KeyboardInterrupt, in reverse order of registration; a failing cleanup is logged and never hides the
  error that ended the run.
- ``charts/frames_per_s`` means one thing everywhere: wall-clock frames (or the trainer's unit) per second.
  CPU-time rates have their own tag, ``charts/cpu_frames_per_s``.

Lives in ``worldmodels.common`` so that every package (agents, worldmodels, launch) may use it: imports point
``launch -> agents -> worldmodels``.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from worldmodels.common.atomic import DiskFullError

log = logging.getLogger(__name__)


class RunExistsError(FileExistsError):
    """A run directory that holds a run already."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the run (a ``KeyboardInterrupt``); ``signum`` says which, and the command exits
    with ``128 + signum``, as a shell reports a process that signal ended: 130 for SIGINT, 143 for SIGTERM."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


#: The signal that last asked this process to stop (None: none did). The exit status comes from it too, because the
#: :class:`Interrupted` a handler raises inside a library call may reach the command as a plain ``KeyboardInterrupt``
#: (measured: ``collect`` under Ray, SIGTERM during a ``ray.get``, exited 130, not 143).
_stop_signal: int | None = None


def stop_signal() -> int | None:
    """The signal that last asked this process to stop (SIGINT or SIGTERM), or None."""
    return _stop_signal


def clear_stop_signal() -> None:
    """Forget the recorded stop signal: a new command in the same process (tests call ``main`` many times) must not
    report an earlier command's SIGTERM as its own exit status."""
    global _stop_signal
    _stop_signal = None


def _record_stop(signum: int) -> None:
    global _stop_signal
    _stop_signal = int(signum)


def raise_interrupted(signum: int, frame: FrameType | None) -> None:
    """A signal handler: SIGTERM (or any signal) stops the process as Ctrl-C does, by raising :class:`Interrupted`."""
    _record_stop(signum)
    raise Interrupted(signum)


@contextmanager
def preserve_signal_handlers() -> Iterator[None]:
    """Keep this process's SIGINT and SIGTERM handlers across the block: ``ray.init`` installs its own SIGTERM
    handler (``sys.exit(15)``, no checkpoint, a stack dump), which would replace a run's."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            if handler is not None and signal.getsignal(signum) is not handler:
                try:
                    signal.signal(signum, handler)
                except ValueError:  # not the main thread: handlers cannot be set (nor were they changed)
                    pass


class RunFailed(RuntimeError):
    """An error that ends a run for a reason outside the user's command (Ray actors lost beyond their restarts): the
    command line prints its message in one line (the traceback with ``-v``) and exits 1, and no checkpoint is written
    after it (``checkpoint_after``: the state it would hold is incomplete)."""

    checkpoint_after = False


class StopRun(Exception):
    """Raised by a hook to end training early and cleanly (final checkpoint written, everything closed)."""


def run_path(run_dir: str | Path | None, runs_dir: str, name: str) -> Path:
    """Where a run lives: ``--run-dir`` if given, else ``run.runs_dir / run.name``."""
    return Path(run_dir) if run_dir else Path(runs_dir) / name


#: What a run start writes before its first checkpoint: a folder holding only these (and no checkpoint) is a start
#: that failed, which a new start may reuse (the lock file of :mod:`worldmodels.common.runlock` included).
_RUN_ARTEFACTS = ("config.yaml", "checkpoints", "events.out.tfevents.*", ".reverie.lock", "run.json")


def _failed_start(path: Path) -> bool:
    """``path`` holds only what a run start writes before its first checkpoint (no checkpoint, no other file)."""
    from fnmatch import fnmatch

    from worldmodels.common.checkpoint import list_checkpoints

    if list_checkpoints(path / "checkpoints"):
        return False
    return all(any(fnmatch(p.name, pattern) for pattern in _RUN_ARTEFACTS) for p in path.iterdir())


def check_run_dir(path: str | Path, resume: bool, check_lock: bool = True) -> Path:
    """Check, without creating or removing anything, that ``path`` can hold this run: a run to resume, or a folder
    that is absent, empty, or holds a start that failed (a config but no checkpoint). Trainers call it before
    reading data, so that a bad directory is refused early; :func:`prepare_run_dir` then makes the folder, once
    everything else has been validated, so that a failed start leaves nothing that blocks the next attempt.

    :raises FileNotFoundError: ``resume`` and ``path`` holds no run (no ``config.yaml``).
    :raises RunExistsError: a new run whose directory holds a run with checkpoints, or files that are not a run's.
    :raises RunLockedError: another live process writes ``path`` (naming it); ``check_lock=False``: the caller
        holds the lock itself.
    """
    from worldmodels.common.runlock import check_unlocked

    path = Path(path)
    if check_lock and path.is_dir():
        check_unlocked(path)
    if resume:
        if not (path / "config.yaml").is_file():
            raise FileNotFoundError(f"cannot resume: {path} holds no run (no config.yaml).")
        return path
    if path.exists() and not path.is_dir():
        raise RunExistsError(f"run directory {path} is a file; choose a new name (run.name=... or --run-dir ...).")
    if path.exists() and any(path.iterdir()) and not _failed_start(path):
        raise RunExistsError(f"run directory {path} already exists; pass --resume {path} to continue it, or "
                             f"choose a new name (run.name=... or --run-dir ...).")
    return path


def prepare_run_dir(path: str | Path, resume: bool, locked: bool = False) -> Path:
    """The run's directory: an existing run to resume, or a new folder, created. A folder left by a start that
    failed (a config and TensorBoard files but no checkpoint) is emptied of them and reused, with a warning.

    :raises FileNotFoundError: ``resume`` and ``path`` holds no run (no ``config.yaml``).
    :raises RunExistsError: a new run whose directory holds a run with checkpoints, or files that are not a run's.
    :param locked: the caller holds the folder's lock (:class:`worldmodels.common.runlock.DirectoryLock`).
    """
    import shutil

    from worldmodels.common.runlock import LOCK_NAME

    path = check_run_dir(path, resume, check_lock=not locked)
    leftovers = [p for p in path.iterdir() if p.name != LOCK_NAME] if path.is_dir() else []
    if not resume and leftovers:
        log.warning("%s holds a run that stopped before its first checkpoint: reusing the folder", path)
        for p in leftovers:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_yaml(cfg: Any) -> str:
    """A config dataclass as YAML: what a run directory's ``config.yaml`` and every checkpoint hold (Enums as their
    names, which load back)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


class Rates:
    """Frames (or the trainer's unit) per second over the last logging window, by wall clock and by CPU time.

    :param count: the count at the window's start (e.g. the frames a resumed run starts from).
    """

    def __init__(self, count: float = 0.0) -> None:
        self._wall, self._cpu, self._count = time.perf_counter(), time.process_time(), count

    def measure(self, count: float) -> tuple[float, float, float]:
        """(wall rate, CPU rate, wall seconds) since the window started; starts a new window."""
        wall, cpu = time.perf_counter(), time.process_time()
        dw, dc, dn = max(wall - self._wall, 1e-9), max(cpu - self._cpu, 1e-9), count - self._count
        self._wall, self._cpu, self._count = wall, cpu, count
        return dn / dw, dn / dc, dw


class RunScaffold:
    """The frame around a training loop; a context manager (see the module docstring).

    :param path: run directory (refused if it holds a run, unless ``resume``).
    :param resume: continue the run in ``path``.
    :param config_yaml: the merged config, written as ``config.yaml`` (None: leave the folder's file alone).
    :param total: the progress bar's total (None: count without a total).
    :param initial: where the bar starts (a resumed run's count).
    :param unit: the bar's unit ("frame", "upd").
    :param progress: show the bar.
    :param desc: the bar's label (default: the run directory's name).
    :param command: the command that writes the run (``train``, ``fit-vae``, ...), recorded with ``algo`` in
        ``run.json`` (:mod:`worldmodels.common.runrecord`) so that other commands can say what the folder is.
    :param resumed_from: the checkpoint a resume continues from: newer checkpoints beside it (a branch the resume
        abandons) are set aside (``.abandoned``) once the run holds its directory.
    :param purge_step: TensorBoard hides what earlier sessions logged at or after this step (a resume's own count,
        where the run logs in that unit), so an abandoned branch's curves do not overlap the new ones.
    """

    def __init__(self, path: str | Path, resume: bool = False, config_yaml: str | None = None,
                 total: int | None = None, initial: int = 0, unit: str = "frame", progress: bool = True,
                 desc: str | None = None, command: str | None = None, algo: str | None = None,
                 resumed_from: Path | None = None, purge_step: int | None = None) -> None:
        from worldmodels.common.runlock import DirectoryLock

        check_run_dir(path, resume)  # refuse a used folder before making or locking anything
        # One writer per run directory, for the life of the run (the kernel drops the lock when the process dies).
        self._lock = DirectoryLock(path).acquire()
        try:
            self.path = prepare_run_dir(path, resume, locked=True)  # checked again, now under the lock
        except BaseException:
            self._lock.release()
            raise
        if resume and resumed_from is not None:
            from worldmodels.common.checkpoint import set_aside_newer

            set_aside_newer(Path(resumed_from))
        self._purge_step = purge_step if resume else None
        self._config_yaml = config_yaml
        self._record = (command, algo)
        self._bar_args = {"total": total, "initial": initial, "unit": unit, "unit_scale": True,
                          "disable": not progress, "dynamic_ncols": True, "desc": desc or self.path.name}
        self._cleanups: list[Callable[[], Any]] = []
        self._interrupt: Callable[[], Any] | None = None
        self._error: Callable[[], Any] | None = None
        self._previous_handlers: dict[int, Any] = {}
        self.stop_requested = False
        self.stop_signal: int | None = None
        self.writer: Any = None
        self.bar: Any = None
        self.last_checkpoint: Path | None = None

    def __enter__(self) -> RunScaffold:
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        from worldmodels.common.atomic import atomic_write

        if self._config_yaml:  # atomically, and only now that the run starts (a resume refused earlier keeps its own)
            atomic_write(self.path / "config.yaml", self._config_yaml.encode())
        if self._record[0] is not None:
            from worldmodels.common.runrecord import write_record

            write_record(self.path, self._record[0], self._record[1])
        self.writer = SummaryWriter(log_dir=str(self.path), purge_step=self._purge_step)
        self.bar = tqdm(**self._bar_args)
        # Handlers can only be installed from the main thread (a trainer run from a worker thread keeps Python's).
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous_handlers[signum] = signal.signal(signum, self._request_stop)
            except ValueError:
                break
        return self

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        _record_stop(signum)
        if self.stop_requested:  # a second signal: the user means it, stop wherever the run is
            raise Interrupted(signum)
        self.stop_requested = True
        self.stop_signal = signum
        log.warning("%s received: stopping after this step (send it again to stop at once)",
                    signal.Signals(signum).name)

    def check_interrupt(self) -> None:
        """Call between steps: raises :class:`Interrupted` (a ``KeyboardInterrupt``) if SIGINT or SIGTERM asked the
        run to stop."""
        if self.stop_requested:
            raise Interrupted(self.stop_signal or signal.SIGINT)

    def on_interrupt(self, write_checkpoint: Callable[[], Any]) -> None:
        """What to do on Ctrl-C or SIGTERM before the interrupt propagates: write a last checkpoint."""
        self._interrupt = write_checkpoint

    def on_error(self, write_checkpoint: Callable[[], Any]) -> None:
        """What to do when any other exception ends the run, before it propagates: keep what the run learnt since
        its last checkpoint (write it as one that pushes no older checkpoint out: the state after an error may be
        worse than the last good one). A failure here is logged, never raised over the error that ended the run."""
        self._error = write_checkpoint

    def add_cleanup(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` when the run ends, however it ends (last registered, first run)."""
        self._cleanups.append(fn)

    def advance(self, count: int, **postfix: Any) -> None:
        """Move the bar to ``count`` (absolute, capped at the total) and show ``postfix`` beside frames/s."""
        total = self.bar.total
        self.bar.update((min(count, total) if total else count) - self.bar.n)
        if postfix:
            self.bar.set_postfix(refresh=False, **postfix)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if exc_type is not None and issubclass(exc_type, KeyboardInterrupt) and self._interrupt is not None:
                if self.bar is not None:
                    self.bar.close()
                self.last_checkpoint = self._interrupt()
                log.warning("interrupted; last checkpoint %s", self.last_checkpoint)
            elif exc_type is not None and issubclass(exc_type, Exception) and self._error is not None \
                    and not issubclass(exc_type, DiskFullError) and getattr(exc, "checkpoint_after", True):
                # Not after a full disk (another checkpoint would only fill it again), nor after an error that says
                # a checkpoint now would be incomplete (dead Ray actors: their state is gone).
                try:
                    self.last_checkpoint = self._error()
                    log.warning("training stopped by an error; last checkpoint %s", self.last_checkpoint)
                except Exception:
                    log.exception("could not write a checkpoint after the error")
        finally:
            self.close()

    def close(self) -> None:
        """Close the bar, run the cleanups (newest first), close the writer, restore the signal handlers;
        idempotent."""
        if self.bar is not None:
            self.bar.close()
        while self._cleanups:
            fn = self._cleanups.pop()
            try:
                fn()
            except Exception:  # a failing cleanup must not hide the error that ended the run
                log.exception("cleanup %r failed", fn)
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        while self._previous_handlers:
            signum, handler = self._previous_handlers.popitem()
            signal.signal(signum, handler)
        self._lock.release()
