"""The track schema: column names, types, value rules and the genre list.

One place that says what a valid row of the Spotify Tracks Dataset looks like;
the reader, the validator, the generator and the tests all take it from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

INDEX_COLUMN = ""  # the unnamed leading column: the old pandas index, read and ignored
GENRE = "track_genre"
TRACK_ID = "track_id"
KEY = (TRACK_ID, GENRE)  # a duplicate repeats this pair


@dataclass(frozen=True)
class Column:
    """One named column of the input: its kind and, for numbers, its allowed range."""

    name: str
    kind: str  # "str", "int", "float" or "bool"
    low: float | None = None
    high: float | None = None
    required: bool = False  # a row without a value is rejected


COLUMNS: tuple[Column, ...] = (
    Column(TRACK_ID, "str", required=True),
    Column("artists", "str"),
    Column("album_name", "str"),
    Column("track_name", "str"),
    Column("popularity", "int", 0, 100, required=True),
    Column("duration_ms", "int", 0, 10_000_000, required=True),
    Column("explicit", "bool", required=True),
    Column("danceability", "float", 0, 1, required=True),
    Column("energy", "float", 0, 1, required=True),
    Column("key", "int", -1, 11, required=True),
    Column("loudness", "float", -60, 10, required=True),
    Column("mode", "int", 0, 1, required=True),
    Column("speechiness", "float", 0, 1, required=True),
    Column("acousticness", "float", 0, 1, required=True),
    Column("instrumentalness", "float", 0, 1, required=True),
    Column("liveness", "float", 0, 1, required=True),
    Column("valence", "float", 0, 1, required=True),
    Column("tempo", "float", 0, 300, required=True),
    Column("time_signature", "int", 0, 5, required=True),
    Column(GENRE, "str", required=True),
)
BY_NAME = {c.name: c for c in COLUMNS}
NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
FILE_COLUMNS: tuple[str, ...] = (INDEX_COLUMN, *NAMES)  # header of the file, in order
ARROW_TYPES_BY_KIND = {
    "str": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
}
ARROW_TYPES: dict[str, pa.DataType] = {c.name: ARROW_TYPES_BY_KIND[c.kind] for c in COLUMNS}
_PANDAS = {
    "str": "str",
    "int": "int64",
    "float": "float64",
    "bool": "bool",
}  # "str": pyarrow-backed
PANDAS_DTYPES: dict[str, str] = {c.name: _PANDAS[c.kind] for c in COLUMNS}
TRUE_VALUES = ("True", "true", "TRUE")
FALSE_VALUES = ("False", "false", "FALSE")

TOP_COLUMNS: tuple[str, ...] = (GENRE, "rank", TRACK_ID, "track_name", "artists", "popularity")

# The 114 genres of the real file, in the order of its 1,000-row blocks.
GENRES: tuple[str, ...] = tuple(
    [
        "acoustic",
        "afrobeat",
        "alt-rock",
        "alternative",
        "ambient",
        "anime",
        "black-metal",
        "bluegrass",
        "blues",
        "brazil",
        "breakbeat",
        "british",
        "cantopop",
        "chicago-house",
        "children",
        "chill",
        "classical",
        "club",
        "comedy",
        "country",
        "dance",
        "dancehall",
        "death-metal",
        "deep-house",
        "detroit-techno",
        "disco",
        "disney",
        "drum-and-bass",
        "dub",
        "dubstep",
        "edm",
        "electro",
        "electronic",
        "emo",
        "folk",
        "forro",
        "french",
        "funk",
        "garage",
        "german",
        "gospel",
        "goth",
        "grindcore",
        "groove",
        "grunge",
        "guitar",
        "happy",
        "hard-rock",
        "hardcore",
        "hardstyle",
        "heavy-metal",
        "hip-hop",
        "honky-tonk",
        "house",
        "idm",
        "indian",
        "indie-pop",
        "indie",
        "industrial",
        "iranian",
        "j-dance",
        "j-idol",
        "j-pop",
        "j-rock",
        "jazz",
        "k-pop",
        "kids",
        "latin",
        "latino",
        "malay",
        "mandopop",
        "metal",
        "metalcore",
        "minimal-techno",
        "mpb",
        "new-age",
        "opera",
        "pagode",
        "party",
        "piano",
        "pop-film",
        "pop",
        "power-pop",
        "progressive-house",
        "psych-rock",
        "punk-rock",
        "punk",
        "r-n-b",
        "reggae",
        "reggaeton",
        "rock-n-roll",
        "rock",
        "rockabilly",
        "romance",
        "sad",
        "salsa",
        "samba",
        "sertanejo",
        "show-tunes",
        "singer-songwriter",
        "ska",
        "sleep",
        "songwriter",
        "soul",
        "spanish",
        "study",
        "swedish",
        "synth-pop",
        "tango",
        "techno",
        "trance",
        "trip-hop",
        "turkish",
        "world-music",
    ]
)
assert len(GENRES) == 114
