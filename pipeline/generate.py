"""A realistic synthetic Spotify Tracks CSV, deterministic by seed, written in chunks.

Every field of row i is a pure function of (seed, i): the bytes do not depend on `chunk_rows`,
and an N-row file is the first N rows of any bigger file with the same seed.
Use `generate(path, rows, seed)` or `python -m pipeline.generate --help`.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.schema import FILE_COLUMNS, GENRES, NAMES

BLOCK = 1_000  # rows per genre block, as in the real file
EMPTY_NAMES_ROW = 65_900  # the one row with empty artists, album_name and track_name
P_REUSE = 0.105  # rows listing a track of another genre (about a fifth of rows share a track)
P_DUP = 0.0025  # rows repeating a (track_id, track_genre) pair already written
P_FAR_DUP = (
    0.001  # of those, the share copying a block of the same genre in an earlier cycle (rare,
)
# as in real listings, where a repeated track sits next to its twin)
REUSE_WINDOW = 8  # a shared track comes from one of the previous 8 genre blocks
GENRE_POOL, SHARED_POOL, P_SHARED = 400, 2_000, 0.12  # bounded artist pools
MAX_CHUNK_ROWS = 2_000_000  # a chunk's text must fit Arrow's 32-bit string offsets
THREADS = 2  # chunks made at once (numpy and Arrow release Python's lock for much of it)
HEADER = (",".join(FILE_COLUMNS) + "\n").encode()


def _words(text: str) -> tuple[str, ...]:
    """The whitespace-separated words of a text block."""
    return tuple(text.split())


ID_ALPHABET = np.frombuffer(
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", np.uint8
)

FIRST_NAMES = _words(
    """Ana Ben Carla Dario Elif Femi Grace Hugo Ines Jonas Kenji Lena Mateo Nora Omar
    Priya Quinn Rosa Sven Tariq Uma Victor Wen Ximena Yusuf Zoe Malik Chloé Björn Joaquín Søren
    Aiko Min-jun Lucía Émile Ngozi Ravi Dmitri Aurora Luca"""
)
LAST_NAMES = _words(
    """Silva Nakamura Okafor Müller Rossi Kim Haddad Jensen Moreau García Novak Reyes
    Santos Ivanova Brooks Tanaka Lindqvist Mendoza O'Neill Dubois Kowalski Costa Hernández Park
    Walker Fischer Yilmaz Sato Rahman Kaur Blackwood Ferreira"""
)
ADJECTIVES = _words(
    """Golden Electric Silent Broken Velvet Midnight Wild Lost Neon Crystal Burning Hollow
    Lonely Sweet Cosmic Frozen Endless Little Bitter Shining Quiet Crimson Secret Paper Northern
    Gentle Savage Blue Last First Dancing Falling Sleeping Restless Heavy Bright Dark Tender Sacred
    Corazón Mañana Über Noche Ciel 夜空 사랑 ﾃｽﾄ Sehnsucht Saudade"""
)
NOUNS = _words(
    """Heart Summer Rain Fire Night River Dreams Ghosts Lights Road Ocean Echo Shadows Sky
    Garden Stars Horizon Memory Wolves Machine Letters Mirror Thunder Angel Storm Kingdom Whisper
    Highway Island Moon Colours Waves Souls Rhythm Paradise Silence Flowers Mountains City Love
    Vida Amor Herz Sol 東京 Canción Mélodie 🔥 Pyramids Satellites"""
)
TRACK_TAILS = ("",) * 150 + (
    " - Remastered 2011",
    " - Live",
    " (feat. Lil Nova)",
    ", Pt. 2",
    ' (From "Frozen Hearts")',
    " - Radio Edit",
    ", Op. 28",
    ' - "Unplugged" Version',
    " (Acoustic)",
    " - Remix",
)
ALBUM_TAILS = ("",) * 40 + (" (Deluxe Edition)", ", Vol. 1", ' The "Best" Of', " (Remastered)")
SPECIAL_ARTISTS = (
    "Crosby, Stills & Nash",
    "Earth, Wind & Fire",
    "Peter, Paul and Mary",
    'Tyler "Ty" Brooks',
    'The "Real" Deal',
    "Beyoncé",
    "Björk",
    "Sigur Rós",
    "Mötley Crüe",
    "Ñengo Flow",
    "宇多田ヒカル",
    "방탄소년단",
    "ﾃｽﾄ Band",
    "Los Tigres del Norte",
    "Dvořák Ensemble",
    "🔥 Kids",
)

DEFAULT_PROFILE = dict(
    popularity=33.0,
    zero_share=0.12,
    duration=215_000.0,
    explicit=0.07,
    danceability=0.56,
    energy=0.64,
    loudness=-8.0,
    speechiness=0.06,
    acousticness=0.30,
    instrumental_share=0.15,
    liveness=0.18,
    valence=0.47,
    tempo=122.0,
)
QUIET = {"classical", "piano", "sleep", "ambient", "new-age", "study"}
LOUD = {"metal", "grindcore", "hardcore", "metalcore"}
CLUB = {"dance", "edm", "house", "techno", "trance", "hardstyle", "club", "electro", "dubstep"}
CLUB |= {"drum-and-bass", "breakbeat", "party", "disco", "garage", "idm"}
PROFILE_RULES: tuple[tuple[set[str], dict[str, float]], ...] = (
    ({"pop", "cantopop", "mandopop", "latin", "latino", "reggaeton"}, dict(popularity=45.0)),
    (
        {"acoustic", "folk", "singer-songwriter", "songwriter", "guitar", "bluegrass", "country"},
        dict(acousticness=0.7, energy=0.42, loudness=-10.0),
    ),
    (
        {"jazz", "blues", "soul", "tango", "opera", "show-tunes"},
        dict(acousticness=0.65, energy=0.4, loudness=-11.0, instrumental_share=0.25),
    ),
    (
        QUIET,
        dict(
            loudness=-20.0,
            energy=0.12,
            acousticness=0.92,
            instrumental_share=0.8,
            danceability=0.33,
            valence=0.18,
            tempo=102.0,
            speechiness=0.04,
            popularity=28.0,
        ),
    ),
    ({"sleep", "ambient"}, dict(loudness=-25.0, energy=0.06, duration=260_000.0, tempo=92.0)),
    (
        LOUD,
        dict(
            loudness=-5.0,
            energy=0.91,
            acousticness=0.01,
            danceability=0.4,
            valence=0.28,
            tempo=134.0,
            instrumental_share=0.2,
        ),
    ),
    ({"grindcore"}, dict(duration=110_000.0, loudness=-4.5, energy=0.96)),
    (
        CLUB,
        dict(
            danceability=0.74,
            energy=0.84,
            loudness=-6.0,
            acousticness=0.04,
            instrumental_share=0.45,
            tempo=128.0,
        ),
    ),
    ({"drum-and-bass"}, dict(tempo=172.0)),
    ({"hardstyle"}, dict(tempo=152.0, loudness=-4.0)),
    (
        {"hip-hop", "dancehall", "reggaeton", "r-n-b"},
        dict(speechiness=0.22, explicit=0.45, danceability=0.74, instrumental_share=0.03),
    ),
    (
        {"comedy"},
        dict(
            speechiness=0.85,
            liveness=0.72,
            acousticness=0.8,
            instrumental_share=0.0,
            explicit=0.4,
            energy=0.6,
            tempo=100.0,
            popularity=22.0,
        ),
    ),
    ({"kids", "children", "disney", "happy"}, dict(valence=0.8, explicit=0.0, energy=0.6)),
    ({"sad"}, dict(valence=0.2, energy=0.4, acousticness=0.5, popularity=50.0, explicit=0.25)),
    ({"iranian", "romance", "detroit-techno", "chicago-house"}, dict(zero_share=0.35)),
)


def _profile(genre: str) -> dict[str, float]:
    """The means of one genre: the default overridden by every rule naming a word of it."""
    words = {genre, *genre.split("-")}
    profile = dict(DEFAULT_PROFILE)
    for names, overrides in PROFILE_RULES:
        if words & names:
            profile.update(overrides)
    return profile


PROFILES = {k: np.array([_profile(g)[k] for g in GENRES]) for k in DEFAULT_PROFILE}
GENRE_TEXT = pa.array(GENRES)


def _mix(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class _Draws:
    """Random draws keyed by (seed, key, stream name): stateless, so chunking cannot change them."""

    def __init__(self, seed: int, keys: np.ndarray) -> None:
        salt = _mix(np.array([seed % 2**64], np.uint64))[0]
        self.base = (keys.astype(np.uint64) << np.uint64(32)) ^ salt

    def bits(self, stream: str) -> np.ndarray:
        return _mix(self.base ^ np.uint64(zlib.crc32(stream.encode())))

    def uniform(self, stream: str) -> np.ndarray:
        return (self.bits(stream) >> np.uint64(11)) * 2.0**-53

    def normal(self, stream: str) -> np.ndarray:
        radius = np.sqrt(-2.0 * np.log1p(-self.uniform(stream + ".r")))
        return radius * np.cos(2 * np.pi * self.uniform(stream + ".a"))

    def index(self, stream: str, size: np.ndarray | int) -> np.ndarray:
        return (self.uniform(stream) * size).astype(np.int64)

    def chance(self, stream: str, p: np.ndarray | float) -> np.ndarray:
        return self.uniform(stream) < p

    def unit(self, stream: str, mean: np.ndarray | float, spread: float = 1.0) -> np.ndarray:
        """A value in [0, 1] around `mean` (logit-normal), rounded to 3 decimals."""
        logit = np.log(mean / (1 - mean)) + spread * self.normal(stream)
        return np.round(1 / (1 + np.exp(-logit)), 3)


def _targets(seed: int, rows: np.ndarray) -> np.ndarray:
    """The row each row copies its track from: itself (a new track), a row of one of the previous
    genre blocks (a track listed under several genres) or an earlier row of its own genre."""
    d = _Draws(seed, rows)
    block, pos = np.divmod(rows, BLOCK)
    kind = d.uniform("kind")
    reuse = (kind < P_REUSE) & (block > 0)
    dup = (kind >= P_REUSE) & (kind < P_REUSE + P_DUP)
    far = dup & (block >= len(GENRES)) & d.chance("far", P_FAR_DUP)
    near = dup & ~far & (pos > 0)
    reuse_block = block - 1 - d.index("reuse.block", np.minimum(block, REUSE_WINDOW))
    far_block = block - len(GENRES) * (1 + d.index("far.cycle", block // len(GENRES)))
    target = np.select(
        [reuse, near, far],
        [
            reuse_block * BLOCK + d.index("reuse.pos", BLOCK),
            block * BLOCK + d.index("near.pos", pos),
            far_block * BLOCK + d.index("far.pos", BLOCK),
        ],
        rows,
    )
    target[rows == EMPTY_NAMES_ROW] = EMPTY_NAMES_ROW  # the empty row is new and never copied
    target[(target == EMPTY_NAMES_ROW) & (rows != EMPTY_NAMES_ROW)] -= 1
    return target


def _sources(seed: int, rows: np.ndarray) -> np.ndarray:
    """Follow copies back to the row that introduced each track (targets only go backwards)."""
    src = rows.copy()
    todo = np.arange(len(rows))
    while todo.size:
        target = _targets(seed, src[todo])
        moved = target != src[todo]
        src[todo] = target
        todo = todo[moved]
    return src


def _artist(rnd: random.Random) -> str:
    """One artist name: a person, a band or (rarely) a name with commas, quotes or unicode."""
    kind = rnd.random()
    if kind < 0.04:
        return rnd.choice(SPECIAL_ARTISTS)
    if kind < 0.35:
        return f"The {rnd.choice(ADJECTIVES)} {rnd.choice(NOUNS)}"
    return f"{rnd.choice(FIRST_NAMES)} {rnd.choice(LAST_NAMES)}"


def _artist_pool(seed: int) -> pa.Array:
    """GENRE_POOL artist credits per genre, then SHARED_POOL shared ones; names join by ';'."""
    rnd = random.Random(seed)
    size = len(GENRES) * GENRE_POOL + SHARED_POOL
    credits = [rnd.choices((1, 2, 3), (0.75, 0.18, 0.07))[0] for _ in range(size)]
    return pa.array([";".join(_artist(rnd) for _ in range(n)) for n in credits])


def _title(d: _Draws, stream: str, tails: tuple[str, ...]) -> pa.Array:
    """A title made of an adjective, a noun and (sometimes) a tail like ' - Live'."""
    parts = [
        pa.array(words).take(d.index(f"{stream}.{i}", len(words)))
        for i, words in enumerate((ADJECTIVES, NOUNS, tails))
    ]
    return pc.binary_join_element_wise(parts[0], " ", parts[1], parts[2], "")


def _names(seed: int, src: np.ndarray, artists: pa.Array) -> dict[str, pa.Array]:
    """Artists, album and track name of each source track."""
    d = _Draws(seed, src)
    genre = (src // BLOCK) % len(GENRES)
    skewed = d.uniform("artist") ** 2  # a few artists have many tracks
    shared = len(GENRES) * GENRE_POOL + (skewed * SHARED_POOL).astype(np.int64)
    own = genre * GENRE_POOL + (skewed * GENRE_POOL).astype(np.int64)
    track = _title(d, "track", TRACK_TAILS)
    album = pc.if_else(d.chance("single", 0.3), track, _title(d, "album", ALBUM_TAILS))
    chosen = np.where(d.chance("shared", P_SHARED), shared, own)
    return {"artists": artists.take(chosen), "album_name": album, "track_name": track}


def _track_ids(seed: int, src: np.ndarray) -> pa.Array:
    """22-character base62 ids like Spotify's, eight digits from each of three hashes."""
    d = _Draws(seed, src)
    digits = np.empty((len(src), 22), np.uint8)
    for j in range(22):
        if j % 8 == 0:
            bits = d.bits(f"id{j // 8}")
        bits, digits[:, j] = np.divmod(bits, np.uint64(62))
    offsets = np.arange(0, 22 * len(src) + 1, 22, dtype=np.int32)
    return pa.StringArray.from_buffers(
        len(src), pa.py_buffer(offsets), pa.py_buffer(ID_ALPHABET[digits])
    )


def _features(seed: int, src: np.ndarray) -> dict[str, np.ndarray]:
    """The numeric columns of each source track, drawn around its genre's profile."""
    d = _Draws(seed, src)
    p = {k: v[(src // BLOCK) % len(GENRES)] for k, v in PROFILES.items()}
    popularity = np.clip(np.rint(p["popularity"] + 18 * d.normal("popularity")), 0, 100)
    duration = np.exp(np.log(p["duration"]) + 0.35 * d.normal("duration"))
    duration = np.where(d.chance("long", 2e-4), 1e6 + 4.2e6 * d.uniform("long.ms"), duration)
    instrumental = d.chance("instrumental", p["instrumental_share"])
    tempo = np.round(np.clip(p["tempo"] + 25 * d.normal("tempo"), 40, 243), 3)
    silent = d.chance("silent", 1e-3)  # like the real file: tempo 0, time signature 0
    meter = np.array([0, 1, 3, 5, 4])[
        np.searchsorted([0.0015, 0.01, 0.09, 0.106], d.uniform("meter"))
    ]
    return {
        "popularity": np.where(d.chance("zero", p["zero_share"]), 0, popularity).astype(np.int64),
        "duration_ms": np.clip(duration, 15_000, 5_237_295).astype(np.int64),
        "explicit": d.chance("explicit", p["explicit"]),
        "danceability": np.where(silent, 0.0, d.unit("danceability", p["danceability"])),
        "energy": d.unit("energy", p["energy"]),
        "key": np.where(d.chance("nokey", 5e-4), -1, d.index("key", 12)),
        "loudness": np.round(np.clip(p["loudness"] + 3.5 * d.normal("loudness"), -49.5, 4.5), 3),
        "mode": d.chance("mode", 0.64).astype(np.int64),
        "speechiness": d.unit("speechiness", p["speechiness"], 0.8),
        "acousticness": d.unit("acousticness", p["acousticness"], 1.8),
        "instrumentalness": np.where(
            instrumental, d.unit("instr", 0.8), d.unit("instr.low", 0.0008, 2.0)
        ),
        "liveness": d.unit("liveness", p["liveness"], 0.8),
        "valence": d.unit("valence", p["valence"]),
        "tempo": np.where(silent, 0.0, tempo),
        "time_signature": np.where(silent, 0, meter),
    }


def _csv_text(values: pa.Array) -> pa.Array:
    """Quote like csv.QUOTE_MINIMAL: only fields holding a comma, a quote or a line break."""
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(values, '"', '""'), '"', "")
    return pc.if_else(pc.match_substring_regex(values, '[,"\r\n]'), quoted, values)


def _number_text(values: np.ndarray) -> pa.Array:
    """Numbers as the real file writes them: floats always with a point (0.0, -6.746)."""
    if values.dtype == np.bool_:
        return pc.if_else(pa.array(values), "True", "False")
    if values.dtype.kind in "iu":
        return pc.cast(pa.array(values), pa.string())
    text = pc.cast(pa.array(values + 0.0), pa.string())  # + 0.0 turns -0.0 into 0.0
    has_point = pc.match_substring(text, ".")
    return pc.if_else(has_point, text, pc.binary_join_element_wise(text, ".0", ""))


def _chunk(seed: int, start: int, stop: int, artists: pa.Array, line_breaks: int = 0) -> pa.Array:
    """The CSV lines of rows start..stop-1, each ending in a newline; with ``line_breaks``,
    the track name of every ``line_breaks``-th row holds a line break (a quoted value over two
    physical lines)."""
    rows = np.arange(start, stop, dtype=np.int64)
    src = _sources(seed, rows)
    fields = {"track_id": _track_ids(seed, src), **_names(seed, src, artists)}
    if line_breaks:
        broken = pc.replace_substring(fields["track_name"], " ", "\n", max_replacements=1)
        fields["track_name"] = pc.if_else(
            pa.array(rows % line_breaks == 0), broken, fields["track_name"]
        )
    empty = pa.array(rows == EMPTY_NAMES_ROW)
    fields.update(
        {k: _csv_text(pc.if_else(empty, "", v)) for k, v in fields.items() if k != "track_id"}
    )
    fields.update({k: _number_text(v) for k, v in _features(seed, src).items()})
    fields["track_genre"] = GENRE_TEXT.take((rows // BLOCK) % len(GENRES))
    columns = [_number_text(rows), *(fields[name] for name in NAMES)]
    return pc.binary_join_element_wise(pc.binary_join_element_wise(*columns, ","), "\n", "")


def _buffer(lines: pa.Array) -> memoryview:
    """The bytes of all strings of an Arrow string array, back to back, without copying."""
    offsets = np.frombuffer(lines.buffers()[1], np.int32, len(lines) + 1, lines.offset * 4)
    return memoryview(lines.buffers()[2])[offsets[0] : offsets[-1]]


def generate(
    path: str | Path,
    rows: int = 114_000,
    seed: int = 42,
    chunk_rows: int = 100_000,
    line_breaks: int = 0,
) -> Path:
    """Write `rows` synthetic rows to `path` atomically (temp file + rename) and return the path.

    The output is the same for every `chunk_rows`; it only bounds memory (a few KB per row).
    ``line_breaks``: if not 0, every ``line_breaks``-th track name holds a line break.
    """
    if line_breaks < 0:
        raise ValueError(f"line_breaks must be 0 or positive, got {line_breaks}")
    if rows < 1 or chunk_rows < 1:
        raise ValueError(f"rows and chunk_rows must be positive, got {rows} and {chunk_rows}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    artists = _artist_pool(seed)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as out, ThreadPoolExecutor(THREADS) as pool:
            out.write(HEADER)
            step = min(chunk_rows, MAX_CHUNK_ROWS)
            pending: deque[Future[pa.Array]] = deque()  # a few chunks ahead, written in order
            for start in range(0, rows, step):
                stop = min(start + step, rows)
                pending.append(pool.submit(_chunk, seed, start, stop, artists, line_breaks))
                if len(pending) > THREADS:
                    out.write(_buffer(pending.popleft().result()))
            while pending:
                out.write(_buffer(pending.popleft().result()))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


PROG = "python -m pipeline.generate"


def _positive(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit 2), no usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Write a realistic synthetic CSV with the schema of the Spotify Tracks "
        "Dataset: 114 genres in blocks of 1,000 rows, shared and duplicated tracks, quoted and "
        "unicode names. The same seed and rows always give the same bytes.",
        epilog="example: python -m pipeline.generate --rows 10000000 --output data/big.csv",
    )
    parser.add_argument(
        "--rows", type=_positive, default=114_000, help="rows to write (default: 114000)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("data/dataset.csv"),
        metavar="FILE",
        help="CSV file to write, parent folders created (default: data/dataset.csv)",
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    parser.add_argument(
        "--line-breaks-every",
        type=_positive,
        default=None,
        metavar="N",
        help="the track name of every N-th row holds a line break (default: none)",
    )
    return parser


def _fail(code: int, message: str) -> int:
    """Print one error line on stderr and return the exit code."""
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """The CLI: parse, check the output path, generate, print one line; returns the exit code."""
    args = _parser().parse_args(argv)
    output = args.output
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return _fail(2, f"cannot create the folder of --output {output}: {err.strerror or err}")
    if output.is_dir():
        return _fail(2, f"--output {output} is a folder; give a file name")
    started = time.perf_counter()
    try:
        generate(output, rows=args.rows, seed=args.seed, line_breaks=args.line_breaks_every or 0)
    except OSError as err:
        return _fail(1, f"cannot write {output}: {err.strerror or err}")
    except KeyboardInterrupt:
        return _fail(130, f"interrupted; {output} not written")
    seconds = time.perf_counter() - started
    mb = output.stat().st_size / 1e6
    print(f"wrote {output}: {args.rows:,} rows, {mb:,.1f} MB in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
