"""Video and image codecs for the lake, on PyAV and Pillow.

Frames are uint8 arrays (T, H, W, 3) in RGB. Bad bytes raise `MediaError` with a reason code, never a bare PyAV
or Pillow exception: the ingest loop turns that code into a `rejects` row. Decoding reuses one swscale
reformatter per thread, which is ~2x faster than `frame.to_ndarray(format="rgb24")` on small clips."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO

import av
import av.error
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from lake.errors import MediaError

MediaSource = bytes | bytearray | memoryview | BinaryIO | str | os.PathLike

# name -> (container format, encoder, pixel format, encoder options)
VIDEO_CODECS: dict[str, tuple[str, str, str, dict[str, str]]] = {
    # mbtree off: x264's macroblock-tree pass made the same frames encode differently after libvpx had run in
    # the same process; without it the bytes depend on the frames alone (at a few percent of bitrate)
    "h264": ("mp4", "libx264", "yuv420p", {"crf": "18", "preset": "veryfast", "x264-params": "mbtree=0"}),
    "mpeg4": ("mp4", "mpeg4", "yuv420p", {"qscale": "3"}),
    "vp9": ("webm", "libvpx-vp9", "yuv420p", {"crf": "30", "b": "0", "deadline": "realtime", "cpu-used": "8"}),
    "mjpeg": ("avi", "mjpeg", "yuvj420p", {"qscale": "3"}),
    # lossless RGB (Matroska/FFV1): for what must come back pixel-exact, e.g. evaluation outputs
    "ffv1": ("matroska", "ffv1", "bgra", {}),
}
IMAGE_FORMATS = frozenset({"png_pipe", "jpeg_pipe", "image2", "bmp_pipe", "webp_pipe", "gif", "tiff_pipe"})
MAX_PIXELS_PER_FRAME = 4096 * 4096
_CONTAINER_SIGNATURES = (b"ftyp", b"\x1a\x45\xdf\xa3", b"RIFF", b"OggS", b"FLV")

# What damaged bytes raise inside PyAV: its FFmpeg errors, plus plain Python errors from corrupt metadata.
_DECODE_FAILURES = (av.error.FFmpegError, EOFError, ValueError, OSError)

_local = threading.local()


def _reformatter() -> VideoReformatter:
    if not hasattr(_local, "reformatter"):
        _local.reformatter = VideoReformatter()
    return _local.reformatter


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    fps: float
    width: int
    height: int
    codec: str
    container: str
    is_image: bool  # a still image (PNG, JPEG …) opened as a one-frame clip

    @property
    def duration(self) -> float:
        return self.frames / self.fps if self.fps else 0.0


# ---------------------------------------------------------------------------------------------------- video


def check_frames(frames: np.ndarray, what: str = "frames") -> np.ndarray:
    """Frames as the lake expects them: uint8 (T, H, W, 3) with T >= 1; raises MediaError('bad_frames')."""
    frames = np.asarray(frames)
    if frames.ndim == 3 and frames.shape[-1] == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise MediaError("bad_frames", f"{what} must be (T, H, W, 3), got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise MediaError("bad_frames", f"{what} must be uint8, got {frames.dtype}")
    return frames


def encode_video(frames: np.ndarray, fps: float = 8.0, codec: str = "h264") -> bytes:
    """Encode RGB frames as a video file (MP4/H.264 by default)."""
    frames = check_frames(frames)
    if codec not in VIDEO_CODECS:
        raise MediaError("unsupported", f"codec {codec!r}; choose one of {', '.join(VIDEO_CODECS)}")
    container_format, encoder, pix_fmt, options = VIDEO_CODECS[codec]
    _, height, width, _ = frames.shape
    if pix_fmt.endswith("420p") and (height % 2 or width % 2):
        raise MediaError("bad_frames", f"{codec} with 4:2:0 chroma needs even width and height, got {width}x{height}")
    buffer = io.BytesIO()
    # bitexact: no random segment UID (Matroska) and no library version strings, so bytes are reproducible
    with av.open(buffer, mode="w", format=container_format, options={"fflags": "+bitexact"}) as container:
        # one encoder thread: the bitstream then depends only on the frames, not on how many cores a worker sees
        stream = container.add_stream(encoder, rate=Fraction(fps).limit_denominator(1001),
                                      options={**options, "threads": "1", "flags": "+bitexact"})
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if pix_fmt == "bgra":  # a channel shuffle to 32-bit pixels (opaque alpha), done here rather than by swscale
            padded = np.full((*frames.shape[:3], 4), 255, np.uint8)
            padded[..., :3] = frames[..., ::-1]
            planes = padded
        else:
            planes = rgb_to_yuv420(frames, full_range=pix_fmt == "yuvj420p")
        for plane in planes:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(plane, format=pix_fmt)))
        container.mux(stream.encode(None))
    return buffer.getvalue()


# BT.601 RGB -> YCbCr: limited range (what yuv420p means to decoders) and full range (JPEG's yuvj420p).
_LIMITED = (np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]]) / 255,
            np.array([16.0, 128.0, 128.0]))
_FULL = (np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]),
         np.array([0.0, 128.0, 128.0]))


def rgb_to_yuv420(frames: np.ndarray, full_range: bool = False) -> np.ndarray:
    """RGB (T, H, W, 3) to planar 4:2:0 in PyAV's layout (T, H*3/2, W): Y, then U, then V.

    Done here rather than by swscale, whose edge handling reads uninitialised padding now and then and made
    the same frames encode to different bytes; with this the encoded bytes depend on the frames alone. Chroma is
    the average of each 2x2 block (OpenCV's area resize), luma is per pixel, BT.601 coefficients."""
    (ry, gy, by), (ru, gu, bu), (rv, gv, bv) = (_FULL if full_range else _LIMITED)[0].astype(np.float32)
    oy, ou, ov = (_FULL if full_range else _LIMITED)[1].astype(np.float32)
    t, h, w, _ = frames.shape
    out = np.empty((t, h * 3 // 2, w), np.uint8)
    quarter = (h // 2) * (w // 2)
    for i, frame in enumerate(frames):
        f = frame.astype(np.float32)
        out[i, :h] = np.clip(np.rint(f[..., 0] * ry + f[..., 1] * gy + f[..., 2] * by + oy), 0, 255)
        small = cv2.resize(frame, (w // 2, h // 2), interpolation=cv2.INTER_AREA).astype(np.float32)
        chroma = out[i, h:].reshape(-1)
        chroma[:quarter] = np.clip(np.rint(small[..., 0] * ru + small[..., 1] * gu + small[..., 2] * bu + ou),
                                   0, 255).reshape(-1)
        chroma[quarter:] = np.clip(np.rint(small[..., 0] * rv + small[..., 1] * gv + small[..., 2] * bv + ov),
                                   0, 255).reshape(-1)
    return out


def decode_video(
    src: MediaSource,
    *,
    max_frames: int | None = None,
    min_frames: int = 1,
    name: str | None = None,
    keep: Callable[[int], Sequence[int]] | None = None,
) -> np.ndarray:
    """Decode a video (bytes, a file object such as a Lance BlobFile, or a path) to uint8 (T, H, W, 3).

    `keep`, given the number of frames decoded, names the ones wanted (in order, repeats allowed): every frame is
    still decoded and checked, but only those are converted to RGB, about a quarter of the cost of a 720p frame.

    Raises MediaError: `empty`, `not_a_video`, `truncated` (fewer frames than the container declares, or a decode
    error midway), `corrupt` (frame size changes midway), `too_few_frames` (< min_frames), `unsupported` (no
    decoder), `too_large` (absurd frame size)."""
    reformatter = _reformatter()
    if keep is None:
        frames: list[np.ndarray] = []
        _scan(src, name, max_frames, min_frames, lambda frame: frames.append(
            reformatter.reformat(frame, format="rgb24").to_ndarray()))
        return np.stack(frames)
    decoded: list[av.VideoFrame] = []  # still in the decoder's own format (YUV 4:2:0: half RGB's bytes)
    count = _scan(src, name, max_frames, min_frames, decoded.append)
    wanted = list(keep(count))
    if not wanted or min(wanted) < 0 or max(wanted) >= count:
        raise ValueError(f"{name or 'video'}: keep({count}) named frames {wanted[:8]}…, outside 0..{count - 1}")
    converted = {i: reformatter.reformat(decoded[i], format="rgb24").to_ndarray() for i in dict.fromkeys(wanted)}
    return np.stack([converted[i] for i in wanted])


def count_frames(src: MediaSource, *, min_frames: int = 1, name: str | None = None) -> int:
    """Decode every frame (so a truncated or corrupt video fails exactly as in `decode_video`) but keep none: the
    frame count of a long or HD video without holding its pixels in memory."""
    return _scan(src, name, None, min_frames, None)


def _scan(src: MediaSource, name: str | None, max_frames: int | None, min_frames: int, on_frame) -> int:
    """Decode frame by frame with the checks every reader relies on; `on_frame` sees each decoded frame."""
    count, size = 0, None
    with _open(src, name) as container:
        stream = _video_stream(container, name)
        declared, slack = _declared_frames(container, stream)
        try:
            for frame in container.decode(stream):
                if size is not None and (frame.width, frame.height) != size:
                    raise MediaError("corrupt", f"frame {count} is {frame.width}x{frame.height}, "
                                     f"frame 0 was {size[0]}x{size[1]}", name)
                size = (frame.width, frame.height)
                if on_frame is not None:
                    on_frame(frame)
                count += 1
                if max_frames is not None and count >= max_frames:
                    break
        except _DECODE_FAILURES as e:
            raise MediaError("truncated", f"decode failed after {count} frames: {_first_line(e)}", name) from None
    truncated = max_frames is None or count < max_frames
    if not count:
        raise MediaError("truncated", "no frame could be decoded", name)
    if truncated and declared and count < declared - slack:
        raise MediaError("truncated", f"decoded {count} of {declared} declared frames", name)
    if count < min_frames:
        raise MediaError("too_few_frames", f"{count} frame(s), need at least {min_frames}", name)
    return count


def probe_video(src: MediaSource, *, name: str | None = None) -> VideoInfo:
    """Frames, fps, size and codec without decoding pixels (frames are counted from packets when undeclared)."""
    with _open(src, name) as container:
        stream = _video_stream(container, name)
        frames = stream.frames
        if not frames:
            try:
                frames = sum(1 for packet in container.demux(stream) if packet.size)
            except _DECODE_FAILURES as e:
                raise MediaError("truncated", f"demux failed: {_first_line(e)}", name) from None
        rate = stream.average_rate or stream.base_rate or stream.guessed_rate
        return VideoInfo(
            frames=int(frames),
            fps=float(rate) if rate else 0.0,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            codec=stream.codec_context.name,
            container=container.format.name,
            is_image=container.format.name in IMAGE_FORMATS,
        )


class _open:
    """av.open with every failure mapped to a MediaError reason; a context manager like the container itself."""

    def __init__(self, src: MediaSource, name: str | None):
        self.src, self.name = src, name

    def __enter__(self) -> av.container.InputContainer:
        src, name = self.src, self.name
        if isinstance(src, str | os.PathLike):
            if not os.path.exists(src):
                raise MediaError("empty", "file does not exist", name or str(src))
            if os.path.getsize(src) == 0:
                raise MediaError("empty", "file is empty", name or str(src))
            head = _head_of_file(src)
        elif isinstance(src, bytes | bytearray | memoryview):
            if len(src) == 0:
                raise MediaError("empty", "no bytes", name)
            head = bytes(src[:16])
            src = io.BytesIO(src)
        else:
            head = _peek(src)
            if not head:
                raise MediaError("empty", "no bytes", name)
        try:
            self.container = av.open(src, mode="r", options={"probesize": "5000000"}, metadata_errors="replace")
        except _DECODE_FAILURES as e:
            reason = "truncated" if _looks_like_container(head) else "not_a_video"
            raise MediaError(reason, _first_line(e), name) from None
        return self.container

    def __exit__(self, *exc) -> None:
        self.container.close()


def _video_stream(container, name: str | None):
    if not container.streams:
        raise MediaError("truncated", f"{container.format.name} container holds no stream at all", name)
    if not container.streams.video:
        raise MediaError("not_a_video", f"{container.format.name} container holds no video stream", name)
    stream = container.streams.video[0]
    ctx = stream.codec_context
    if ctx is None or ctx.codec is None:
        raise MediaError("unsupported", "no decoder for this stream", name)
    if ctx.width * ctx.height > MAX_PIXELS_PER_FRAME:
        raise MediaError("too_large", f"frame size {ctx.width}x{ctx.height}", name)
    if ctx.width == 0 or ctx.height == 0:
        raise MediaError("truncated", "stream declares no frame size", name)
    return stream


def _declared_frames(container, stream) -> tuple[int, int]:
    """Frames the container promises and the slack allowed: the stream's exact count (MP4, AVI), or
    duration x rate (WebM/Matroska), which can round one frame either way. (0, 0) when nothing is promised."""
    if stream.frames:
        return int(stream.frames), 0
    rate = stream.average_rate or stream.guessed_rate
    if container.duration and rate and container.format.name not in IMAGE_FORMATS:
        return round(container.duration / av.time_base * float(rate)), 1
    return 0, 0


def _head_of_file(path) -> bytes:
    with open(path, "rb") as f:
        return f.read(16)


def _peek(f: BinaryIO) -> bytes:
    pos = f.tell()
    head = f.read(16)
    f.seek(pos)
    return head


def _looks_like_container(head: bytes) -> bool:
    return any(sig in head[:12] for sig in _CONTAINER_SIGNATURES)


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0]


# ---------------------------------------------------------------------------------------------------- images


# the lake's (object_store-style) storage options, as pyarrow's S3FileSystem names them
_S3_OPTIONS = {"aws_access_key_id": "access_key", "aws_secret_access_key": "secret_key", "aws_region": "region",
               "aws_session_token": "session_token", "aws_endpoint": "endpoint_override"}


def read_uri(uri: str, storage_options: dict[str, str] | None = None) -> bytes:
    """The bytes a `*_uri` column points to (`file:///abs/path`, `s3://bucket/key`, …), through pyarrow.fs; an
    S3 URI uses the lake's storage options. Raises MediaError('missing_file') naming the URI when it cannot be read."""
    from pyarrow import fs

    try:
        if uri.startswith("s3://"):
            options = {_S3_OPTIONS[k]: v for k, v in (storage_options or {}).items() if k in _S3_OPTIONS}
            if str((storage_options or {}).get("allow_http", "")).lower() == "true":
                options["scheme"] = "http"
            bucket_key = uri[len("s3://"):]
            filesystem, path = fs.S3FileSystem(**options), bucket_key
        else:
            filesystem, path = fs.FileSystem.from_uri(uri)
        with filesystem.open_input_stream(path) as stream:
            return stream.read()
    except (OSError, ValueError) as e:  # pyarrow raises FileNotFoundError / OSError / ArrowInvalid (a ValueError)
        raise MediaError("missing_file", _first_line(e), source=uri) from None


def encode_image(image: np.ndarray, format: str = "png", quality: int = 90) -> bytes:
    """RGB uint8 (H, W, 3) or grayscale (H, W) to PNG (lossless) or JPEG bytes."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
        raise MediaError("bad_frames", f"image must be uint8 (H, W, 3) or (H, W), got {image.dtype} {image.shape}")
    buffer = io.BytesIO()
    fmt = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG"}.get(format.lower())
    if fmt is None:
        raise MediaError("unsupported", f"image format {format!r}; use png or jpeg")
    Image.fromarray(image).save(buffer, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def decode_image(data: bytes | BinaryIO | str | os.PathLike, *, name: str | None = None) -> np.ndarray:
    """Image bytes (or a path) to RGB uint8 (H, W, 3); transparency is composited on white."""
    if isinstance(data, bytes | bytearray | memoryview):
        if len(data) == 0:
            raise MediaError("empty", "no bytes", name)
        data = io.BytesIO(data)
    try:
        with Image.open(data) as img:
            img.load()
            if img.mode in ("RGBA", "LA", "P"):
                img = img.convert("RGBA")
                canvas = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(canvas, img)
            return np.asarray(img.convert("RGB"))
    except UnidentifiedImageError:
        raise MediaError("not_an_image", "Pillow cannot identify the bytes", name) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise MediaError("truncated", _first_line(e), name) from None


def encode_mask_stack(masks: np.ndarray) -> bytes:
    """Boolean masks (T, H, W) as one lossless 1-bit PNG strip (T*H, W); the frame count rides in a text chunk."""
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3:
        raise MediaError("bad_frames", f"masks must be (T, H, W), got {masks.shape}")
    info = PngImagePlugin.PngInfo()
    info.add_text("frames", str(masks.shape[0]))
    buffer = io.BytesIO()
    Image.fromarray(masks.reshape(-1, masks.shape[2])).convert("1").save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def decode_mask_stack(data: bytes, *, name: str | None = None) -> np.ndarray:
    """The inverse of encode_mask_stack: a bool array (T, H, W)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            frames = int(img.text.get("frames", "1"))
            strip = np.asarray(img.convert("L")) > 127
    except UnidentifiedImageError:
        raise MediaError("not_an_image", "mask bytes are not a PNG", name) from None
    if strip.shape[0] % frames:
        raise MediaError("bad_frames", f"strip height {strip.shape[0]} is not a multiple of {frames} frames", name)
    return strip.reshape(frames, -1, strip.shape[1])


def thumbnail(image_or_frames: np.ndarray, size: int = 128, format: str = "jpeg") -> bytes:
    """A small preview: the middle frame of a clip (or the image itself), fitted inside size x size."""
    array = np.asarray(image_or_frames)
    if array.ndim == 4:
        array = array[len(array) // 2]
    img = Image.fromarray(array)
    img.thumbnail((size, size), Image.Resampling.BILINEAR)
    return encode_image(np.asarray(img), format=format, quality=85)


def video_thumbnail(src: MediaSource, size: int = 128, *, name: str | None = None) -> bytes:
    return thumbnail(decode_video(src, name=name), size=size)
