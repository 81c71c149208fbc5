"""Labels given as ids (the hub's convention) or as names from dataset.labels."""


def label_in_set(value: object, names: list[str]) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 0 <= value < len(names)
    return isinstance(value, str) and value in names


def label_id(value: object, names: list[str]) -> int:
    """Labels may be ids (hub convention) or names; both map to the id (checked beforehand)."""
    return names.index(value) if isinstance(value, str) else int(value)
