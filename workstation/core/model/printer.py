"""A film printer as the user configures it (a printer profile), and the film geometry of DICOM Basic
Print (PS3.3 C.13.3, C.13.8): film sizes in mm, Image Display Formats and where each image box sits
on the film, in Image Box Position order."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields, replace

from workstation.core.model.node import Node, NodeError, check_ae_title, check_port

# Film Size ID (PS3.3 C.13.8) -> (width, height) in mm, portrait
FILM_SIZES_MM: dict[str, tuple[float, float]] = {
    "8INX10IN": (203.2, 254.0), "8_5INX11IN": (215.9, 279.4), "10INX12IN": (254.0, 304.8),
    "10INX14IN": (254.0, 355.6), "11INX14IN": (279.4, 355.6), "11INX17IN": (279.4, 431.8),
    "14INX14IN": (355.6, 355.6), "14INX17IN": (355.6, 431.8), "24CMX24CM": (240.0, 240.0),
    "24CMX30CM": (240.0, 300.0), "A4": (210.0, 297.0), "A3": (297.0, 420.0),
}
ORIENTATIONS = ("PORTRAIT", "LANDSCAPE")
MAGNIFICATIONS = ("REPLICATE", "BILINEAR", "CUBIC", "NONE")
MEDIUMS = ("PAPER", "CLEAR FILM", "BLUE FILM", "MAMMO CLEAR FILM", "MAMMO BLUE FILM")
DESTINATIONS = ("MAGAZINE", "PROCESSOR")
DEFAULT_FORMATS = tuple(f"STANDARD\\{c},{r}" for c, r in
                        ((1, 1), (1, 2), (2, 1), (2, 2), (2, 3), (3, 3), (3, 4), (3, 5), (4, 4), (4, 5), (4, 6), (5, 6)))
_FORMAT = re.compile(r"^(STANDARD|ROW|COL)\\(\d+(?:,\d+)*)$")


class PrintSetupError(ValueError):
    """A printer profile or a film that cannot work, in words the user can act on."""


def parse_display_format(text: str) -> tuple[str, list[int]]:
    """'STANDARD\\C,R' -> ('STANDARD', [C, R]); 'ROW\\2,1' -> ('ROW', [2, 1]) (boxes in each row, top to
    bottom); 'COL\\2,3' -> boxes in each column, left to right."""
    match = _FORMAT.match(text.strip().upper())
    if not match:
        raise PrintSetupError(f"the display format {text!r} is not STANDARD\\C,R, ROW\\a,b,... or COL\\a,b,...")
    kind, numbers = match.group(1), [int(n) for n in match.group(2).split(",")]
    if kind == "STANDARD" and len(numbers) != 2 or any(n < 1 or n > 16 for n in numbers):
        raise PrintSetupError(f"the display format {text!r} has a count that is not 1 to 16 (STANDARD takes C,R)")
    return kind, numbers


def display_format(text: str) -> str:
    kind, numbers = parse_display_format(text)
    return f"{kind}\\{','.join(str(n) for n in numbers)}"


def box_count(text: str) -> int:
    kind, numbers = parse_display_format(text)
    return numbers[0] * numbers[1] if kind == "STANDARD" else sum(numbers)


def box_rects(text: str) -> list[tuple[float, float, float, float]]:
    """Each image box as (left, top, width, height) in fractions of the film, in Image Box Position
    order: left to right and top to bottom (COL: top to bottom in each column, left to right)."""
    kind, numbers = parse_display_format(text)
    if kind == "STANDARD":
        columns, rows = numbers
        return [(c / columns, r / rows, 1 / columns, 1 / rows) for r in range(rows) for c in range(columns)]
    out = []
    for i, count in enumerate(numbers):
        for j in range(count):
            if kind == "ROW":
                out.append((j / count, i / len(numbers), 1 / count, 1 / len(numbers)))
            else:
                out.append((i / len(numbers), j / count, 1 / len(numbers), 1 / count))
    return out


def film_size_mm(film_size: str, orientation: str = "PORTRAIT") -> tuple[float, float]:
    try:
        w, h = FILM_SIZES_MM[film_size.upper()]
    except KeyError:
        raise PrintSetupError(f"the film size {film_size!r} is not one of {', '.join(FILM_SIZES_MM)}") from None
    if orientation.upper() not in ORIENTATIONS:
        raise PrintSetupError(f"the film orientation {orientation!r} is not PORTRAIT or LANDSCAPE")
    return (h, w) if orientation.upper() == "LANDSCAPE" else (w, h)


@dataclass(frozen=True)
class Printer:
    """A film printer: where it is, what it accepts and what a job uses unless told otherwise."""

    name: str
    aet: str
    host: str
    port: int
    color: bool = False
    film_sizes: tuple[str, ...] = ("8INX10IN", "10INX12IN", "11INX14IN", "14INX14IN", "14INX17IN")
    formats: tuple[str, ...] = DEFAULT_FORMATS
    magnifications: tuple[str, ...] = MAGNIFICATIONS
    dpi: float = 300.0                 # the printer's resolution: the size of the pixels sent
    min_density: int | None = None     # hundredths of optical density; None: the printer's own
    max_density: int | None = None
    bits: int = 8                      # grey images as 8 or 12 bits (Supports12Bit printers)
    presentation_lut: bool = True      # send an IDENTITY Presentation LUT when the printer takes one
    border_density: str = ""           # film box attributes sent when set ("" : the printer's default)
    empty_density: str = ""
    smoothing: str = ""
    trim: str = ""
    resolution_id: str = ""            # RequestedResolutionID: STANDARD or HIGH
    configuration: str = ""            # ConfigurationInformation, printer-specific
    film_size: str = "14INX17IN"       # the defaults of a job
    display_format: str = "STANDARD\\2,2"
    orientation: str = "PORTRAIT"
    medium: str = "BLUE FILM"
    destination: str = "PROCESSOR"
    magnification: str = "CUBIC"
    copies: int = 1
    connect_timeout: float = 5.0
    network_timeout: float = 30.0

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise PrintSetupError("a printer needs a name")
        try:
            object.__setattr__(self, "aet", check_ae_title(self.aet))
            object.__setattr__(self, "port", check_port(self.port))
        except NodeError as exc:
            raise PrintSetupError(f"printer {self.name}: {exc}") from None
        if not self.host.strip():
            raise PrintSetupError(f"printer {self.name}: the host is empty")
        object.__setattr__(self, "film_sizes", tuple(s.upper() for s in self.film_sizes))
        object.__setattr__(self, "formats", tuple(display_format(f) for f in self.formats))
        for size in (*self.film_sizes, self.film_size):
            film_size_mm(size)
        object.__setattr__(self, "display_format", display_format(self.display_format))
        # a job's defaults come from what the printer takes: a default outside its lists is its first
        if self.formats and self.display_format not in self.formats:
            object.__setattr__(self, "display_format", self.formats[0])
        if self.film_sizes and self.film_size.upper() not in self.film_sizes:
            object.__setattr__(self, "film_size", self.film_sizes[0])
        object.__setattr__(self, "orientation", self.orientation.upper())
        film_size_mm(self.film_size, self.orientation)
        if not 50 <= self.dpi <= 1200:
            raise PrintSetupError(f"printer {self.name}: a resolution of {self.dpi} dpi is not 50 to 1200")
        if self.bits not in (8, 12):
            raise PrintSetupError(f"printer {self.name}: grey images go as 8 or 12 bits, not {self.bits}")
        if not 1 <= int(self.copies) <= 99:
            raise PrintSetupError(f"printer {self.name}: copies must be 1 to 99")

    def node(self) -> Node:
        """The printer as a node for the association layer."""
        return Node(self.name, self.aet, self.host, self.port, connect_timeout=self.connect_timeout,
                    network_timeout=self.network_timeout)

    def smallest_format(self, images: int) -> str:
        """The display format of the fewest boxes that holds `images` (the largest when none does)."""
        fitting = sorted((box_count(f), f) for f in self.formats if box_count(f) >= images)
        return fitting[0][1] if fitting else max(self.formats, key=box_count)

    def with_values(self, **values) -> Printer:
        return replace(self, **values)

    def to_json(self) -> dict:
        out = asdict(self)
        out["film_sizes"], out["formats"], out["magnifications"] = (list(self.film_sizes), list(self.formats),
                                                                    list(self.magnifications))
        return out

    @classmethod
    def from_json(cls, raw: dict) -> Printer:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        for key in ("film_sizes", "formats", "magnifications"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)
