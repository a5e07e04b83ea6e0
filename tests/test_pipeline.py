"""The pipeline that runs (issue #16): options resolved once, one build for the
API, the CLI and bench, a result object per face, one state object per video
stream with a real reset()."""
from __future__ import annotations

import os

import numpy as np
import pytest
from skimage import data as skdata

os.environ.setdefault("GLOG_minloglevel", "2")

from avatarizer import Options, schema  # noqa: E402
from avatarizer.api import Avatarizer  # noqa: E402
from avatarizer.pipeline import Face, FrameState, StreamState, build, resolve  # noqa: E402
from avatarizer.pipeline.merge import merge_face  # noqa: E402
from avatarizer.video import TrackerOptions  # noqa: E402
from conftest import run_in_fork, two_face_canvas, warm_up  # noqa: E402


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.ascontiguousarray(skdata.astronaut())


def _count(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)

    def counted(*a, **k):
        calls.append(a)
        return real(*a, **k)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_manifest_and_providers_are_resolved_once(monkeypatch):
    import avatarizer.runtime as R
    import avatarizer.runtime.manifest as RM

    loads = _count(monkeypatch, RM.Manifest, "load")
    providers = _count(monkeypatch, R, "resolve_providers")
    hashed = _count(monkeypatch, RM, "sha256_file")
    with Avatarizer(mode="video") as av:
        assert av.estimator in ("hybrid", "model")
        r = av._pipeline.resolved
        assert len(loads) == 1 and len(providers) == 1
        assert len(hashed) == len(r.manifest.models)  # each listed file hashed once at load
        # what was decided is visible, and it is what the sessions use
        assert r.providers == tuple(av.providers) and r.device_resolved == av.device == "cpu"
        assert r.precision_resolved == av.precision
        assert [e.name for e in av._pipeline["face"].estimator.entries] == [e.name for e in r.face_entries]
        assert av._pipeline["hair"].session.name == r.attributes_entry.name


def test_the_artist_needs_no_manifest(monkeypatch):
    import avatarizer.runtime.manifest as RM

    loads = _count(monkeypatch, RM.Manifest, "load")
    r, est = resolve(Options(estimator="artist"))
    assert est.name == "artist" and r.manifest is None and r.providers == () and not loads
    assert r.precision_resolved == "fp32"


def test_one_pipeline_with_its_render_stage(astronaut):
    with Avatarizer() as av:
        pipe = av._pipeline
        assert [s.name for s in pipe.stages] == ["align", "face", "hair", "merge", "render"]
        lazy = av.run(astronaut)
        assert lazy.images is None and "render" not in lazy.timings  # the API draws lazily
        state = av.run(astronaut, render_size=64)
        assert len(state.images) == 1 and state.images[0].shape == (64, 64, 4) and state.timings["render"] > 0
        np.testing.assert_array_equal(state.images[0], av.from_frame(astronaut).render(64))
        with pytest.raises(ValueError, match="render_size"):
            av.run(astronaut, render_size=0)
    with Avatarizer(mode="video") as av:
        assert [s.name for s in av._pipeline.stages] == ["align", "identity", "merge", "render"]
        assert av._pipeline["face"] is av._pipeline["identity"].face


def test_build_takes_options_or_resolved_options(astronaut):
    pipe = build(Options(estimator="artist", mode="image"))
    try:
        state = pipe.run(FrameState(image=astronaut, face_index=None))
        assert pipe.stream is None and state.stream is None and len(state.faces) == 1
        again = build(pipe.resolved)  # an already resolved one is taken as it is
        try:
            assert again.resolved is pipe.resolved and again.estimator.name == "artist"
        finally:
            again.close()
    finally:
        pipe.close()


def test_a_result_object_per_face(astronaut):
    canvas = two_face_canvas(astronaut)
    with Avatarizer(estimator="artist") as av:
        state = av.run(canvas, face_index=None)
        assert len(state.faces) == 2 and all(isinstance(f, Face) for f in state.faces)
        big, small = state.faces
        assert (big.box[2] - big.box[0]) > (small.box[2] - small.box[0])  # the aligned face reads through
        for f in state.faces:
            assert f.face_params.shape == (schema.FACE.stop - schema.FACE.start,)
            assert f.hair_params.shape == (schema.HAIR.stop - schema.HAIR.start,)
            assert f.params.shape == (schema.PARAM_COUNT,) and f.artist_params is not None
            # (its own slices merged: the age lines of its age widen the face slice's wrinkles)
            np.testing.assert_array_equal(f.params, merge_face(f))
            moved = {schema.NAMES[i].split(".")[0] for i in np.flatnonzero(f.params[schema.FACE] != f.face_params)}
            assert moved <= {"nasolabial_l", "nasolabial_r", "forehead_line", "undereye_l", "undereye_r"}, moved
        np.testing.assert_array_equal(state.params, np.stack([f.params for f in state.faces]))
        assert [a.params.tolist() for a in av.faces(canvas)] == [f.params.tolist() for f in state.faces]
        empty = av.run(np.zeros((64, 64, 3), np.uint8), face_index=None)
        assert empty.faces == [] and empty.params.shape == (0, schema.PARAM_COUNT)


def test_one_stream_state_and_a_real_reset(astronaut):
    opts = TrackerOptions(identity_frames=3)
    with Avatarizer(mode="video", tracker=opts) as av:
        stream = av._pipeline.stream
        assert isinstance(stream, StreamState) and stream.last_timestamp_ms is None
        for i in range(2):
            state = av.run(astronaut, timestamp_ms=i * 40.0)
            assert state.stream is stream
        assert stream.last_timestamp_ms == 40.0 and stream.last_face is None  # run() makes no Avatar
        t = warm_up(av, astronaut, t=80.0, step=40.0)
        assert stream.tracker.warm and stream.identity is not None and stream.hair  # the hair cache
        assert av.from_frame(astronaut, timestamp_ms=t) is not None and stream.last_face is not None
        gone = av.from_frame(np.zeros_like(astronaut), timestamp_ms=t + 40.0)
        assert gone.stale and gone.face == stream.last_face  # the last face's place, from the stream
        with pytest.raises(ValueError, match="strictly increasing"):
            av.run(astronaut, timestamp_ms=t + 40.0)
        with pytest.raises(ValueError, match="within"):  # no float tells frames apart there
            av.from_frame(astronaut, timestamp_ms=1e20)
        assert stream.last_timestamp_ms == t + 40.0  # (the refused frame does not move the clock)
        generation = stream.generation
        av.reset()
        assert av._pipeline.stream is stream and stream.generation == generation + 1
        assert (stream.identity, stream.identity_asked_ms, stream.last_timestamp_ms, stream.last_face,
                stream.last_attributes) == (None, None, None, None, None)
        assert stream.hair == {} and not stream.tracker.warm and stream.tracker.identity is None
        assert av.from_frame(astronaut, timestamp_ms=0.0) is not None  # time starts again


def test_image_mode_networks_run_beside_the_python_with_the_same_result(astronaut, monkeypatch):
    """Image mode: the face model and H run on the pipeline's side threads
    while the calling thread fits the artist's geometry and reads the hair;
    the avatar is exactly the one of running them in turn."""
    import threading
    from concurrent.futures import Future

    import avatarizer.pipeline.face as PF
    import avatarizer.pipeline.hair as PH
    from avatarizer.pipeline.base import beside

    threads = []

    def watched(fn, *args):
        def run():
            threads.append(threading.current_thread().name)
            return fn(*args)
        return beside(run)

    def in_turn(fn, *args):
        done = Future()
        done.set_result(fn(*args))
        return done

    with Avatarizer(estimator="hybrid") as av:
        monkeypatch.setattr(PF, "beside", watched)
        monkeypatch.setattr(PH, "beside", watched)
        side = av.from_frame(astronaut)
        assert len(threads) == 2 and all(t.startswith("avatarizer-side") for t in threads), threads
        monkeypatch.setattr(PF, "beside", in_turn)
        monkeypatch.setattr(PH, "beside", in_turn)
        serial = av.from_frame(astronaut)
    assert side is not None and serial is not None
    np.testing.assert_array_equal(side.params, serial.params)
    assert side.attributes == serial.attributes


def test_image_mode_keeps_openblas_to_one_thread_while_it_runs(astronaut):
    """OpenBLAS's pool threads busy-wait after each product on the core the
    image-mode side threads need: the pipeline limits BLAS to one thread
    while a frame runs (a counted, process-wide limit), and the process's
    BLAS threads are as they were afterwards, also when frames of several
    threads overlap."""
    import threading

    from threadpoolctl import threadpool_info

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    inside = []
    with Avatarizer(estimator="hybrid") as av:
        real = av._pipeline["face"].estimator.estimate
        av._pipeline["face"].estimator.estimate = lambda f, s: (inside.append(blas_threads()), real(f, s))[1]
        av.from_frame(astronaut)
        assert blas_threads() == before
        errors = []

        def worker():
            try:
                for _ in range(3):
                    assert av.from_frame(astronaut) is not None
            except BaseException as exc:  # noqa: BLE001 (reported below)
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
    assert len(inside) == 10 and all(n == [1] * len(before) for n in inside), inside
    assert blas_threads() == before


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_side_threads_work_in_a_forked_child():
    """A process forked after the side pool was made (multiprocessing's
    default start on Linux) gets its own: the parent's threads do not exist
    there, and a call handed to them would never run."""
    from avatarizer.pipeline.base import beside

    assert beside(sum, [1, 2]).result(timeout=10) == 3
    status, got = run_in_fork(lambda: b"1" if beside(sum, [3, 4]).result(timeout=10) == 7 else b"0")
    assert status == 0, status
    assert got == b"1"


def _two_heads(astronaut, left: int, right: int) -> np.ndarray:
    """The astronaut's head twice, ``left`` and ``right`` px wide, side by side on grey (384 x 700)."""
    import cv2

    head = astronaut[20:260, 110:350]
    c = np.full((384, 700, 3), 200, np.uint8)
    c[40:40 + left, 20:20 + left] = cv2.resize(head, (left, left), interpolation=cv2.INTER_AREA)
    c[40:40 + right, 340:340 + right] = cv2.resize(head, (right, right), interpolation=cv2.INTER_AREA)
    return c


def test_video_keeps_to_the_tracked_face_of_two_about_one_size(astronaut):
    """Two people of about one size: the face chosen (``face_index`` 0, the
    largest) was picked by area on every frame, so the tracked person
    changed whenever the sizes crossed (16-20 times in 10 s of two clips
    side by side; a review), their identities blending. The face that
    continues the tracked one keeps its place until the other is
    ``STICKY_AREA`` times its area."""
    from avatarizer.pipeline.align import STICKY_AREA

    def canvas(left: int, right: int) -> np.ndarray:
        return _two_heads(astronaut, left, right)

    sides = []
    with Avatarizer(mode="video", max_faces=2, tracker=TrackerOptions(identity_worker="inline")) as av:
        t = 0.0
        for k in range(24):  # sizes crossing every 3 frames, within 10% of each other
            a, b = (270, 250) if (k // 3) % 2 == 0 else (250, 270)
            state = av.run(canvas(a, b), timestamp_ms=t)
            t += 40.0
            assert len(state.all_faces) == 2 and state.faces
            sides.append(state.faces[0].box[0] < 320)
        assert set(sides) == {True}, sides  # (the left face, the larger on the first frame, throughout)
        big = int(250 * STICKY_AREA ** 0.5) + 30  # the other clearly larger: it is taken
        for _ in range(3):
            state = av.run(canvas(250, big), timestamp_ms=t)
            t += 40.0
        assert state.faces[0].box[0] > 320


def test_video_another_face_index_is_ranked_afresh_and_a_grown_face_leaves_its_rank(astronaut):
    """The first frame of another ``face_index`` kept to the last index's
    face (the align stage used the old track's box before the frame was
    found to start a new track), and its identity started from it; a face
    tracked at index 1 that grew to 5 times the other's area stayed index 1,
    so indices 0 and 1 gave one person (a review, session 77)."""
    def canvas(left: int, right: int) -> np.ndarray:
        return _two_heads(astronaut, left, right)

    with Avatarizer(mode="video", max_faces=2, tracker=TrackerOptions(identity_worker="inline")) as av:
        t = 0.0
        for index in (0, 1, 1, 0):  # (of about one size: within STICKY_AREA, where the old box would hold)
            state = av.run(canvas(300, 280), timestamp_ms=t, face_index=index)
            t += 40.0
            assert len(state.all_faces) == 2 and state.faces
            assert (state.faces[0].box[0] < 320) == (index == 0), index  # (0 the larger, left; 1 the right)
        av.reset()
        sides = []
        for k in range(12):  # the right face grows from 200 px to 330 px, the left shrinks from 300 to 180
            right, left = 200 + 130 * k // 11, 300 - 120 * k // 11
            state = av.run(canvas(left, right), timestamp_ms=t, face_index=1)
            t += 40.0
            sides.append("L" if state.faces[0].box[0] < 320 else "R")
        assert sides[0] == "R" and sides[-1] == "L", sides  # (the smaller face at the end: the left)


def test_the_person_back_gets_their_hairs_memory_back():
    """``Tracker.returns`` gives the identity before a switch back; the
    stream forgot that person's hair retrieval (its style, beard shape and
    gender memory) at the switch as it does for another person, so the
    hairstyle was picked afresh after a hand passed (another one for
    1.3-5.8 s; a review). ``person_back`` gives the kept entry back, marked
    for a refresh at the next frame, under the stream's new generation."""
    import math

    stream = StreamState(TrackerOptions(), None)
    style = (("long", "*"), ("kept",), (None, None), ("female", None))
    entry = (1000.0, np.zeros(schema.PARAM_COUNT, np.float32), {"glasses": "none"}, stream.generation, style)
    stream.hair[0] = entry
    stream.another_person()  # a hand over the face: taken for somebody else
    assert stream.hair == {}
    stream.hair[0] = (1500.0, entry[1], {"glasses": "reading"}, stream.generation, (("short", None),) * 4)
    gen = stream.generation
    stream.person_back()
    t, full, attrs, g, kept = stream.hair[0]
    assert t == -math.inf and attrs == {"glasses": "none"} and kept == style and g == stream.generation == gen + 1
    assert stream.identity is None  # (the answers for the one between: forgotten)
    stream.person_back()  # (nothing kept any more: nothing comes back)
    assert stream.hair == {}
