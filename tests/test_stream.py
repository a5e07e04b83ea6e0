"""``Avatarizer.stream()``: the same avatars as a ``from_frame`` loop, in
order, with the landmarks of the next frame found while the consumer works on
this one; early stops and errors leave no thread behind.

Real frames: the talking-head clip ``../shared/data/video/d0.mp4`` (skipped
with the reason when ``../shared`` is not beside the checkout) and
scikit-image's ``astronaut``.
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from skimage import data as skdata

os.environ.setdefault("GLOG_minloglevel", "2")

from avatarizer.api import Avatarizer  # noqa: E402
from avatarizer.video import TrackerOptions  # noqa: E402
from conftest import need_shared  # noqa: E402
from test_video import read_frames  # noqa: E402

INLINE = TrackerOptions(identity_every_ms=0)  # the identity networks on every frame: deterministic


def _stream_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "avatarizer-stream" and t.is_alive()]


def _wait_for_no_stream_thread(timeout: float = 10.0) -> None:
    """Waits up to ``timeout`` s for every stream worker to end (one left in a
    source's read by close() or on_wait ends once the read returns)."""
    deadline = time.monotonic() + timeout
    while _stream_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _stream_threads()


@pytest.fixture(scope="module")
def clip():
    """40 frames of d0 (BGR) with a black frame at 20 (a lost face), and their timestamps."""
    frames, dt = read_frames(need_shared("data", "video", "d0.mp4"), 40)
    assert len(frames) == 40
    frames.insert(20, np.zeros_like(frames[0]))
    for f in frames:
        f.setflags(write=False)
    return frames, [i * dt for i in range(len(frames))]


def _loop(frames, ts, **opts):
    with Avatarizer(mode="video", color_order="bgr", **opts) as av:
        return [av.from_frame(f, timestamp_ms=t) for f, t in zip(frames, ts)]


@pytest.mark.parametrize("tracker", [INLINE, TrackerOptions(identity_every_ms=100.0, identity_worker="inline")],
                         ids=["every frame", "inline refreshes"])
def test_stream_gives_the_loops_avatars_in_order(clip, tracker):
    """Exactly the loop's avatars with the identity computed on every frame,
    and with identity_worker="inline" (refreshes on the stream's clock, by the
    due frame itself: a video file's avatars, the same on every run)."""
    frames, ts = clip
    loop = _loop(frames, ts, tracker=tracker)
    with Avatarizer(mode="video", color_order="bgr", tracker=tracker) as av:
        got = list(av.stream(frames, ts))
    assert [i for i, _ in got] == list(range(len(frames)))
    assert loop[20] is not None and loop[20].stale  # the black frame: the last avatar, kept
    for i, (a, (_, b)) in enumerate(zip(loop, got)):
        assert (a is None) == (b is None), i
        if a is None:
            continue
        np.testing.assert_array_equal(a.params, b.params, err_msg=f"frame {i}")
        np.testing.assert_array_equal(a.face.transform, b.face.transform, err_msg=f"frame {i}")
        assert a.stale == b.stale and a.expression == b.expression, i
    assert not _stream_threads()


def test_stream_with_the_identity_worker_matches_within_its_timing(clip):
    """With the default tracker the identity networks run on their own worker
    and their answer is adopted by whichever frame follows its arrival (wall
    clock), in a loop as in a stream: expressions and the head transform come
    from the landmarks and match exactly; the identity part may differ by
    that timing only, a little."""
    frames, ts = clip
    loop = _loop(frames, ts)
    with Avatarizer(mode="video", color_order="bgr") as av:
        got = [a for _, a in av.stream(frames, ts)]
    for i, (a, b) in enumerate(zip(loop, got)):
        assert a is not None and b is not None, i
        np.testing.assert_array_equal(a.face.transform, b.face.transform, err_msg=f"frame {i}")
        assert a.expression == b.expression, i
        assert np.abs(a.params - b.params).mean() < 0.01, i


def test_stream_timestamps_default_to_fps_and_are_checked(clip):
    frames, ts = clip
    with Avatarizer(mode="video", color_order="bgr", tracker=INLINE) as av:
        by_fps = [a for _, a in av.stream(frames[:6], fps=25.0)]
    loop = _loop(frames[:6], [i * 40.0 for i in range(6)], tracker=INLINE)
    for a, b in zip(loop, by_fps):
        np.testing.assert_array_equal(a.params, b.params)
    with Avatarizer(mode="video", color_order="bgr") as av:
        with pytest.raises(ValueError, match="one per frame"):
            av.stream(frames[:3], [0.0, 40.0])
        it = av.stream(iter(frames[:4]), iter([0.0, 40.0, 40.0, 80.0]))  # not increasing at frame 2
        assert [i for i, _ in zip(range(2), it)] == [0, 1]
        with pytest.raises(ValueError, match="timestamp"):
            next(it)
        assert not _stream_threads()
        av.reset()  # timestamps may start again
        it = av.stream(iter(frames[:4]), iter([0.0]))
        next(it)
        with pytest.raises(ValueError, match="ran out at frame 1"):
            next(it)
        # an iterator of stamps is read one per frame, never past the frames' end (live.py's stamps are made
        # as its frames are read: one more was an IndexError; a list of other length is refused before)
        av.reset()
        read = []

        def stamps():
            for t in (0.0, 40.0, 80.0):
                read.append(t)
                yield t

        assert [i for i, _ in av.stream(iter(frames[:2]), stamps())] == [0, 1] and read == [0.0, 40.0]


def test_stream_refusals():
    astronaut = skdata.astronaut()
    with Avatarizer() as av:
        with pytest.raises(ValueError, match="mode='video'"):
            av.stream([astronaut])
    with pytest.raises(RuntimeError, match="closed"):  # (closed first: what any call on a closed one says)
        av.stream([astronaut])
    with Avatarizer(mode="video") as av:
        for bad in (dict(fps=0), dict(fps=float("nan")), dict(prefetch=0), dict(face_index=-1)):
            with pytest.raises(ValueError):
                av.stream([astronaut], **bad)
        with pytest.raises(ValueError, match="sequence of frames"):
            av.stream(astronaut)
        with pytest.raises(ValueError, match="iterable"):
            av.stream(42)
        it = av.stream([astronaut, astronaut], [0.0, 40.0])
        next(it)
        with pytest.raises(RuntimeError, match="stream"):  # one stream, one state
            av.from_frame(astronaut, timestamp_ms=80.0)
        with pytest.raises(RuntimeError, match="stream"):
            next(av.stream([astronaut], [100.0]))
        with pytest.raises(RuntimeError, match="stream"):
            av.reset()
        assert [i for i, _ in it] == [1]
        assert av.from_frame(astronaut, timestamp_ms=80.0) is not None  # usable again afterwards
        # a generator kept in a variable: a break does not close it (Python's rule), and the refusal says how
        it = av.stream([astronaut, astronaut], [120.0, 160.0])
        for _ in it:
            break
        with pytest.raises(RuntimeError, match=r"it\.close\(\) or del it"):
            av.from_frame(astronaut, timestamp_ms=200.0)
        it.close()
        assert av.from_frame(astronaut, timestamp_ms=200.0) is not None
    with pytest.raises(RuntimeError, match="closed"):
        av.stream([astronaut])


def test_stopping_early_leaves_no_thread(clip):
    frames, ts = clip
    taken = []

    def source():  # an endless camera-like source
        i = 0
        while True:
            taken.append(i)
            yield frames[i % len(frames)]
            i += 1

    from avatarizer import native

    big = native.AUTO_MIN_PIXELS
    with Avatarizer(mode="video", color_order="bgr") as av:
        for i, _ in av.stream(source()):
            # while a stream runs, threads="auto" renders on the consumer's thread alone
            assert native.auto_threads(big) == 1
            if i == 4:
                break
        assert not _stream_threads()
        assert native._streams == 0  # every way out of a stream below gives its count back
        assert len(taken) <= 5 + 1  # read ahead by at most the prefetch (1)
        gen = av.stream(source(), prefetch=3)
        next(gen)
        assert _stream_threads()
        gen.close()
        assert not _stream_threads()
        # an exception in the consumer's loop
        with pytest.raises(KeyError):
            for i, _ in av.stream(source()):
                if i == 2:
                    raise KeyError("consumer")
        assert not _stream_threads()
        assert native._streams == 0
        # each stream went on from the last frame's time (1000/30 ms apart): a call may follow
        last = av._pipeline.stages[0].aligner()._last_timestamp_ms
        assert last > 0 and av.from_frame(frames[0], timestamp_ms=last + 1.0) is not None
        av.reset()
        assert av.from_frame(frames[0], timestamp_ms=0.0) is not None


def test_errors_from_the_source_and_bad_frames_arrive_in_place(clip):
    frames, _ = clip

    def failing():
        yield from frames[:3]
        raise OSError("camera unplugged")

    with Avatarizer(mode="video", color_order="bgr") as av:
        seen = []
        with pytest.raises(OSError, match="camera unplugged"):
            for i, a in av.stream(failing()):
                seen.append(i)
        assert seen == [0, 1, 2] and not _stream_threads()
        av.reset()
        bad = list(frames[:3]) + [frames[3].astype(np.float64)]  # floats outside [0, 1]
        seen = []
        with pytest.raises(ValueError):
            for i, a in av.stream(bad):
                seen.append(i)
        assert seen == [0, 1, 2] and not _stream_threads()


def test_the_worker_finds_the_landmarks_and_the_consumer_builds_the_faces(clip, monkeypatch):
    """The stream's read-ahead thread, its slowest, runs MediaPipe alone
    (``FaceAligner.find``); the faces (poses, aligning transforms) are built
    on the consuming thread (``faces_found``), once per frame; and the two
    halves give what ``detect`` gives."""
    from avatarizer.align import FaceAligner

    frames, ts = clip
    frames, ts = frames[:6], ts[:6]
    calls = {"find": [], "faces_found": []}
    real = {name: getattr(FaceAligner, name) for name in calls}

    def spy(name):
        def call(self, *args, **kwargs):
            calls[name].append(threading.current_thread())
            return real[name](self, *args, **kwargs)
        return call

    for name in calls:
        monkeypatch.setattr(FaceAligner, name, spy(name))
    with Avatarizer(mode="video", color_order="bgr", tracker=INLINE) as av:
        got = [(i, a.params.copy()) for i, a in av.stream(frames, ts)]
    here = threading.current_thread()
    assert [i for i, _ in got] == list(range(len(frames)))
    assert len(calls["find"]) == len(calls["faces_found"]) == len(frames)
    assert all(t is not here and t.name == "avatarizer-stream" for t in calls["find"])
    assert all(t is here for t in calls["faces_found"])
    with FaceAligner(mode="video", segmentation=False) as one, FaceAligner(mode="video", segmentation=False) as two:
        for f, t in zip(frames, ts):
            a = one.detect(f, t, color_order="bgr")
            b = two.faces_found(two.find(f, t, color_order="bgr"))
            assert len(a) == len(b) == 1
            np.testing.assert_array_equal(a[0].landmarks, b[0].landmarks)
            np.testing.assert_array_equal(a[0].transform, b[0].transform)


def test_the_source_and_the_landmarks_overlap_the_rest_of_the_pipeline(clip, monkeypatch):
    """While the consumer runs the rest of the pipeline on frame k, the worker
    takes frame k + 1 from the source and finds its landmarks. The stage after
    the landmarks holds each frame until the next frame's landmarks are found:
    a stream that read the source or found the landmarks only after the
    consumer's part (as a loop does) never gets past the first frame. Events,
    not the wall clock: a loop and a stream timed against each other came out
    the wrong way round on a loaded machine."""
    frames, ts = clip
    frames, ts = frames[:8], ts[:8]
    index = {t: k for k, t in enumerate(ts)}
    taken, aligned, waited = [], [threading.Event() for _ in frames], []

    def camera():
        for k, f in enumerate(frames):
            taken.append(k)
            yield f

    with Avatarizer(mode="video", color_order="bgr", tracker=INLINE) as av:
        stages = av._pipeline.stages
        align = av._pipeline["align"]
        rest = stages[stages.index(align) + 1]  # the consumer's first stage
        real_ahead, real_rest = align.ahead, rest.run

        def align_ahead(state):  # the worker's part: the landmarks (AlignStage.ahead)
            real_ahead(state)
            aligned[index[state.timestamp_ms]].set()

        def rest_run(state):
            k = index[state.timestamp_ms]
            if k + 1 < len(frames) and all(ok for _, ok, _ in waited):
                # the next frame: taken from the source and its landmarks found meanwhile
                waited.append((k, aligned[k + 1].wait(60), max(taken)))
            real_rest(state)

        monkeypatch.setattr(align, "ahead", align_ahead)
        monkeypatch.setattr(rest, "run", rest_run)
        got = [i for i, _ in av.stream(camera(), ts)]
    assert got == list(range(len(frames)))
    assert waited == [(k, True, k + 1) for k in range(len(frames) - 1)], waited


def test_a_stream_stopped_early_gives_back_the_frames_it_read_ahead(clip):
    frames, ts = clip
    with Avatarizer(mode="video", color_order="bgr") as av:
        for i, _ in av.stream(frames, ts, prefetch=3):
            if i == 5:
                break
        # frames 6.. were read ahead and never handed out: a loop goes on with frame 6
        assert av.from_frame(frames[6], timestamp_ms=ts[6]) is not None
        assert av.from_frame(frames[7], timestamp_ms=ts[7]) is not None
        with pytest.raises(ValueError, match="increasing"):
            av.from_frame(frames[7], timestamp_ms=ts[7])  # the clock itself still holds
        # a stream with default timestamps goes on after the last frame handed out
        for i, a in av.stream(frames[8:10]):
            assert a is not None
        assert av._pipeline.stream.last_timestamp_ms == pytest.approx(ts[7] + 2 * 1000.0 / 30.0)


def test_close_stops_a_stream_that_is_still_held(clip):
    from avatarizer import native

    frames, ts = clip
    av = Avatarizer(mode="video", color_order="bgr")
    gen = av.stream(frames, ts)
    next(gen)
    assert _stream_threads() and native._streams == 1
    av.close()
    deadline = time.monotonic() + 10.0
    while _stream_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _stream_threads()
    assert native._streams == 0  # threads="auto" renders are back for the process
    gen.close()  # the generator's own end gives nothing back twice
    assert native._streams == 0


def test_a_new_face_index_frame_size_or_forgotten_face_starts_a_new_track():
    from avatarizer.filters import Smoothing
    from avatarizer.pipeline.state import StreamState

    s = StreamState(TrackerOptions(), Smoothing())

    def frame(t, index, shape):  # what the pipeline does: the clock (align), then the track (after align)
        s.accept(t)
        s.continue_track(t, index, shape)

    gen = s.generation
    frame(0.0, 0, (480, 640, 3))
    s.identity, s.hair = {"face_params": 1}, {0: (0.0, None, None)}
    s.tracker._last_seen_ms = 0.0  # as the merge stage's Tracker.update leaves it
    frame(33.0, 0, (480, 640, 3))  # the same track goes on
    assert s.generation == gen and s.identity is not None and s.hair
    s.tracker.reset()  # what Tracker.miss does after reset_ms without the face; the stream still holds it
    frame(66.0, 0, (480, 640, 3))
    assert s.generation == gen + 1 and s.identity is None and not s.hair
    assert s.last_timestamp_ms == 66.0  # the clock is kept
    frame(100.0, 1, (480, 640, 3))  # another face
    assert s.generation == gen + 2
    frame(101.0, 1, (640, 480, 3))  # another frame size (a rotated phone): the old transform means nothing
    assert s.generation == gen + 3
    frame(102.0, 1, (640, 480, 3))
    assert s.generation == gen + 3
    with pytest.raises(ValueError, match="increasing"):
        s.accept(50.0)


def test_frames_read_ahead_do_not_start_new_tracks(clip):
    """A stream finds landmarks frames ahead; whether a frame continues the
    track is decided when its turn comes, so frames further apart than the
    read-ahead, but closer than reset_ms, keep one track (they started a new
    track on nearly every frame) and match a loop."""
    frames, _ = clip
    frames = frames[:10]  # a face in each
    ts = [i * 1400.0 for i in range(len(frames))]  # 1.4 s apart: read ahead by 2.8 s with prefetch 2
    loop = _loop(frames, ts, tracker=INLINE)
    with Avatarizer(mode="video", color_order="bgr", tracker=INLINE) as av:
        got = []
        for i, a in av.stream(frames, ts, prefetch=2):
            got.append(a)
            if i == 0:
                gen = av._pipeline.stream.generation
        assert av._pipeline.stream.generation == gen
    for i, (a, b) in enumerate(zip(loop, got)):
        np.testing.assert_array_equal(a.params, b.params, err_msg=f"frame {i}")


def test_after_a_long_gap_without_frames_the_next_face_is_estimated_afresh():
    a_frames, dt = read_frames(need_shared("data", "video", "d0.mp4"), 12)
    b_frames, _ = read_frames(need_shared("data", "video", "d10.mp4"), 12)  # somebody else
    with Avatarizer(mode="video", color_order="bgr", tracker=INLINE) as av:
        fresh_b = [av.from_frame(f, timestamp_ms=i * dt) for i, f in enumerate(b_frames)][-1]
    with Avatarizer(mode="video", color_order="bgr", tracker=INLINE) as av:
        a = [av.from_frame(f, timestamp_ms=i * dt) for i, f in enumerate(a_frames)][-1]
        t0 = len(a_frames) * dt + TrackerOptions().reset_ms + 500.0  # no frames at all in between
        b = [av.from_frame(f, timestamp_ms=t0 + i * dt) for i, f in enumerate(b_frames)][-1]

    def dist(x, y):
        return float(np.abs(x.params - y.params).mean())

    assert dist(a, fresh_b) > 0.01  # two different people
    assert dist(b, fresh_b) < 0.25 * dist(b, a), (dist(b, fresh_b), dist(b, a))
    assert b.attributes["gender"]["value"] == fresh_b.attributes["gender"]["value"]


def test_video_the_first_frame_of_another_size_finds_its_face():
    """A frame of another size (a padded, cropped or rotated stream) starts a
    new track, and its face is found on that very frame: MediaPipe's video
    graph, which looks where it tracked the face in the old frame's
    proportions, is replaced (it missed the face, and the frame got None)."""
    from avatarizer import Avatarizer, sample_photo

    fr = sample_photo()
    big = np.pad(fr, ((0, 160), (0, 96), (0, 0)))  # the face at the same pixels, another frame size
    with Avatarizer(mode="video") as av:
        got = [av.from_frame(f, 33.0 * i) for i, f in
               enumerate([fr, fr, big, big, fr[:400, :400].copy(), fr, fr])]
    assert all(a is not None and not a.stale for a in got), [None if a is None else a.stale for a in got]


def test_a_stream_whose_source_refers_back_to_its_owner_is_collected():
    """A camera object holding the Avatarizer, its stream and the frames()
    generator feeding it: dropped, the cycle was kept alive for good by the
    stream's worker thread (a root holding the source), with the Avatarizer,
    its identity worker process and the process-wide stream count (helper-375).
    Now collected: no stream thread, the count back to 0."""
    import gc
    import weakref

    from avatarizer import native

    astronaut = np.ascontiguousarray(skdata.astronaut())

    class Camera:
        def __init__(self):
            self.av = Avatarizer(mode="video", tracker=INLINE)
            self.avatars = self.av.stream(self.frames())

        def frames(self):
            while True:
                yield astronaut

    cam = Camera()
    assert next(cam.avatars)[1] is not None
    ref = weakref.ref(cam.av)
    del cam
    deadline = time.monotonic() + 10.0
    while (ref() is not None or _stream_threads()) and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.05)
    assert ref() is None and not _stream_threads() and native._streams == 0


def test_close_from_another_thread_ends_the_consumers_loop_with_the_closed_error():
    """close() from another thread while the consumer waits for a slow
    source's next frame: the loop ended as if the video had ended (or waited
    for the source); it raises the RuntimeError of a closed Avatarizer."""
    astronaut = np.ascontiguousarray(skdata.astronaut())

    def slow():
        while True:
            yield astronaut
            time.sleep(0.3)

    av = Avatarizer(mode="video", tracker=INLINE)
    it = av.stream(slow())
    assert next(it)[1] is not None
    threading.Timer(0.1, av.close).start()
    with pytest.raises(RuntimeError, match="closed"):
        for _ in it:
            pass
    _wait_for_no_stream_thread()  # (a worker inside the source's read stops once it returns)


def test_close_from_another_thread_does_not_wait_for_a_source_that_blocks():
    """A camera that stopped sending: close() from another thread while the
    worker is inside the source's next(). The consumer's loop raised the
    closed error only when the read returned (the generator's end joined the
    worker inside the read); now at once, and the worker stops by itself
    once the read returns."""
    from avatarizer import native

    astronaut = np.ascontiguousarray(skdata.astronaut())
    stalled, release = threading.Event(), threading.Event()

    def camera():
        yield astronaut
        stalled.set()
        release.wait(30.0)  # (a read that does not return)
        yield astronaut

    av = Avatarizer(mode="video", tracker=INLINE)
    it = av.stream(camera(), prefetch=1)
    assert next(it)[1] is not None
    assert stalled.wait(10.0)
    threading.Timer(0.1, av.close).start()
    t0 = time.monotonic()
    try:
        with pytest.raises(RuntimeError, match="closed"):
            for _ in it:
                pass
        assert time.monotonic() - t0 < 5.0
        assert native._streams == 0
    finally:
        release.set()
    _wait_for_no_stream_thread()


def test_close_right_as_a_stream_starts_gives_the_stream_count_back(monkeypatch):
    """close() between the stream publishing its stopper and counting
    itself left the process-wide count at 1 for good (threads="auto" then
    one thread, cores.py never pinning again): counted only if not stopped."""
    from avatarizer import native

    astronaut = np.ascontiguousarray(skdata.astronaut())
    av = Avatarizer(mode="video", tracker=INLINE)
    real = native.stream_started

    def slow_start(delta):
        if delta > 0:
            av.close()  # (at the worst moment: the count not yet taken)
        real(delta)

    monkeypatch.setattr(native, "stream_started", slow_start)
    with pytest.raises(RuntimeError, match="closed"):
        list(av.stream([astronaut, astronaut]))
    assert native._streams == 0 and not native.streams_running()


def test_stream_refuses_timestamps_that_are_no_iterable_without_a_type_error():
    astronaut = np.ascontiguousarray(skdata.astronaut())
    with Avatarizer(mode="video", tracker=INLINE) as av:
        with pytest.raises(ValueError, match="timestamps_ms must be an iterable"):
            av.stream([astronaut], np.array(5.0))


def _stalling_camera(frame, release: threading.Event):
    """A source (called: a new generator) that gives ``frame``, then stalls in its next() until
    ``release`` is set (30 s at most), then gives it once more: a camera that stopped sending."""
    def camera():
        yield frame
        release.wait(30.0)
        yield frame

    return camera


def test_on_wait_is_called_while_the_source_stalls_and_can_end_the_stream():
    """A preview must answer its window while a camera stalls: ``on_wait``
    runs on the consuming thread while no frame is ready, and a true return
    ends the stream at once (a read in progress is not waited for)."""
    from avatarizer import native

    astronaut = np.ascontiguousarray(skdata.astronaut())
    release = threading.Event()
    camera = _stalling_camera(astronaut, release)

    calls = []
    me = threading.get_ident()

    def on_wait():
        calls.append(threading.get_ident())
        return len(calls) >= 4

    with Avatarizer(mode="video", tracker=INLINE) as av:
        t0 = time.monotonic()
        try:
            got = [i for i, _ in av.stream(camera(), on_wait=on_wait)]
            assert got == [0] and time.monotonic() - t0 < 10.0
            assert len(calls) == 4 and set(calls) == {me}
            assert native._streams == 0
        finally:
            release.set()
        _wait_for_no_stream_thread()
        assert av.from_frame(astronaut, 10_000.0) is not None  # (the Avatarizer goes on)
        with pytest.raises(ValueError, match="on_wait"):
            av.stream([astronaut], on_wait=5)


def test_an_exception_while_the_source_stalls_reaches_the_app_at_once():
    """Ctrl-C (here a ``KeyboardInterrupt`` from a timer signal) or an
    ``on_wait`` that raises (an app's quit path) while the source's next()
    blocks: the exception reaches the app at once, not when the read
    returns (5 s later in a review's run; never for a source that blocks for
    good). No stream thread is left once the read returns."""
    import signal

    astronaut = np.ascontiguousarray(skdata.astronaut())
    release = threading.Event()
    camera = _stalling_camera(astronaut, release)

    def quit_app():
        if time.monotonic() - t0 > 0.5:
            raise SystemExit("window closed")
        return False

    with Avatarizer(mode="video", tracker=INLINE) as av:
        try:
            t0 = time.monotonic()
            with pytest.raises(SystemExit, match="window closed"):
                for _ in av.stream(camera(), on_wait=quit_app):
                    pass
            assert time.monotonic() - t0 < 10.0
            previous = signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
            try:
                t0 = time.monotonic()
                signal.setitimer(signal.ITIMER_REAL, 0.5)
                with pytest.raises(KeyboardInterrupt):
                    for _ in av.stream(camera()):
                        pass
                assert time.monotonic() - t0 < 10.0
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
        finally:
            release.set()
        _wait_for_no_stream_thread()


def test_the_same_source_streamed_again_after_on_wait_ended_a_stream():
    """``on_wait`` ended a stream while its worker was inside the source's
    ``next()``: streaming the same generator again raised ``ValueError:
    generator already executing``; the new stream waits for that read."""
    astronaut = np.ascontiguousarray(skdata.astronaut())
    gate = threading.Event()

    def camera():
        yield astronaut
        gate.wait(30.0)  # (a stall, over once released)
        for _ in range(3):
            yield astronaut

    cam = camera()
    with Avatarizer(mode="video", tracker=INLINE) as av:
        assert [i for i, _ in av.stream(cam, on_wait=lambda: True)] == [0]
        threading.Timer(0.3, gate.set).start()
        got = [i for i, _ in av.stream(cam)]
        assert got == [0, 1]  # (the frame read when the stall ended went to the old stream: dropped)
