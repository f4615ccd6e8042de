"""Faces through consecutive video frames: the full detector now and then, a closer look at each known face between.

    tracker = FaceTracker(FaceDetector(), redetect_every=10)
    for frame in frames:                     # consecutive frames of one video or camera, in order
        faces = tracker.detect(frame)

Why: on a 640x480 frame the full detector (CenterFace on the frame, then BlazeFace's closer look at each face for its
eyes) is most of a photo's time. Between two frames a face moves little, so the closer look alone, on a cut around
where the face was, finds it again and gives the same eyes the full detector would: the eyes always come from that
closer look (FaceDetector.refined). The full detector still runs on the first frame, every `redetect_every` frames
(a face that walks in is found within that many frames), on any frame where a known face is not found again, and on
every frame while no face is known. Photos never go through this: unrelated photos share nothing.
"""

from __future__ import annotations

import numpy as np

from .detect import Face, FaceDetector, merge

REDETECT_EVERY = 10   # frames: a third of a second at 30 fps before a new face is found


class FaceTracker:
    """`detect(frame)` with FaceDetector's interface, for the frames of one stream in order."""

    def __init__(self, detector: FaceDetector, redetect_every: int = REDETECT_EVERY):
        if redetect_every < 1:
            raise ValueError(f"redetect_every must be 1 or more (1: the full detector on every frame), "
                             f"got {redetect_every}")
        self.detector = detector
        self.redetect_every = int(redetect_every)
        self.last_stage: str | None = None
        self.full_detections = 0
        self.frames = 0
        self._faces: list[Face] = []
        self._since_full = 0
        self._shape: tuple[int, ...] | None = None

    def _followable(self, frame: np.ndarray) -> bool:
        """Whether this frame may skip the full detector: faces known, the same frame size, not yet time for a full
        detection, and every known face seen by BlazeFace's closer look last time (a face only CenterFace sees,
        often a small one in a crowd, cannot be followed; it would be lost on every frame)."""
        return (bool(self._faces) and frame.shape == self._shape and self._since_full + 1 < self.redetect_every
                and all(face.keypoint_model == "full_range" for face in self._faces))

    def reset(self) -> None:
        """Forget the known faces (a cut in the video, a new stream): the next frame gets the full detector."""
        self._faces, self._shape = [], None

    def detect(self, frame: np.ndarray, worth_refining=None) -> list[Face]:
        """The faces in this frame. `worth_refining` (FaceDetector.detect's) is not used: every face is followed by
        its closer look, so each one gets it on the full detection's frame too."""
        self.frames += 1
        if self._followable(frame):
            followed = []
            for face in self._faces:
                followed.append(self.detector.followed(frame, face))
                if followed[-1] is None:   # lost: the full detector looks again, so stop spending on the rest
                    break
            else:
                self._since_full += 1
                self._faces = sorted(merge(followed), key=lambda f: -f.score)
                self.last_stage = "tracked"
                return self._faces
        self._faces = self.detector.detect(frame)
        self._shape, self._since_full = frame.shape, 0
        self.full_detections += 1
        self.last_stage = self.detector.last_stage
        return self._faces
