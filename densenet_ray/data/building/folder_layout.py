"""Which folders of an image folder are classes and which are splits: ``<class>/.../<image>`` (images at any depth
below their class folder, as torchvision's ``ImageFolder`` reads them) or ``<split>/<class>/.../<image>``."""

from __future__ import annotations

from dataclasses import dataclass

from densenet_ray.errors import UserError

LAYOUTS = ("auto", "classes", "splits")
SPLIT_FOLDERS = ("train", "val", "test")  # top-level folders `auto` reads as splits
Parts = tuple[str, ...]  # a file's folders and name, relative to the image folder


@dataclass(frozen=True)
class FolderLayout:
    """The splits (``()`` for a folder of classes) and the sorted class names of an image folder. Every split's
    labels index the same class list, the union over the splits, so the splits' shards agree."""

    splits: tuple[str, ...]
    classes: list[str]

    def class_of(self, path: Parts, split: str | None) -> str | None:
        """The class of the file at ``path`` in ``split`` (None: the folder has no splits), or None for a file
        outside that split's class folders."""
        if split is not None:
            if path[0] != split:
                return None
            path = path[1:]
        return path[0] if len(path) > 1 and path[0] in self.classes else None

    def classes_in(self, images: list[Parts], split: str | None) -> set[str]:
        """The classes with an image in ``split``."""
        return {cls for cls in (self.class_of(path, split) for path in images) if cls is not None}


def read_layout(location: str, images: list[Parts], layout: str = "auto") -> FolderLayout:
    """The layout of the image folder at ``location`` whose images are at ``images``. ``layout``: ``classes`` (every
    top-level folder is a class), ``splits`` (every top-level folder is a split of class folders) or ``auto``
    (splits when every top-level folder is named train, val or test and holds only class folders, or when one folder
    holds them all; classes when no folder is so named; otherwise a :class:`UserError` naming ``--layout``)."""
    if layout not in LAYOUTS:
        raise UserError(f"--layout {layout!r} is not a layout; choose one of: {', '.join(LAYOUTS)}")
    loose = sorted(path[0] for path in images if len(path) == 1)
    if loose:
        raise UserError(
            f"{location} has images outside any class folder ({_some(loose)}); move them into class folders"
        )
    top = sorted({path[0] for path in images})
    if layout == "auto":
        layout = _detect(location, top, images)
    if layout == "classes":
        return FolderLayout((), top)
    shallow = sorted({path[0] for path in images if len(path) == 2})
    if shallow:
        raise UserError(
            f"split folder(s) {_some(shallow)} of {location} hold images directly; with --layout splits every "
            "split holds class folders (<split>/<class>/<image>)"
        )
    return FolderLayout(tuple(top), sorted({path[1] for path in images}))


def _detect(location: str, top: list[str], images: list[Parts]) -> str:
    """``classes`` or ``splits`` where the folder's names and depths say which; a one-line refusal where not."""
    if len(top) == 1 and all(len(path) > 2 for path in images):
        return "splits"  # one folder of class folders (a tar of photos/ holds photos/<class>/...), not one class
    named = [folder for folder in top if folder in SPLIT_FOLDERS]
    if not named:
        return "classes"
    others = [folder for folder in top if folder not in SPLIT_FOLDERS]
    shallow = sorted({path[0] for path in images if len(path) == 2})
    if not others and not shallow:
        return "splits"
    why = f"{_some(others)} beside them" if others else f"images directly in {_some(shallow)}"
    raise UserError(
        f"{location} is ambiguous: {', '.join(named)} may be splits or classes ({why}); pass --layout classes "
        "(every top-level folder is a class) or --layout splits (every top-level folder is a split of classes)"
    )


def _some(names: list[str], count: int = 3) -> str:
    """The first ``count`` names, and how many more."""
    more = f" and {len(names) - count} more" if len(names) > count else ""
    return ", ".join(names[:count]) + more
