import pytest

from bench import docblock

BEGIN, END = "<!-- x:begin -->", "<!-- x:end -->"


def test_fill_replaces_between_markers_and_keeps_the_rest() -> None:
    text = f"head\n{BEGIN}\nold\n{END}\ntail\n"
    assert docblock.fill(text, BEGIN, END, "new") == f"head\n{BEGIN}\nnew\n{END}\ntail\n"


def test_fill_is_idempotent() -> None:
    once = docblock.fill(f"{BEGIN}\n{END}", BEGIN, END, "body\n")
    assert docblock.fill(once, BEGIN, END, "body\n") == once


@pytest.mark.parametrize("text", ["no markers", f"{END}\n{BEGIN}", f"{BEGIN} only"])
def test_fill_refuses_a_page_without_a_block(text: str) -> None:
    with pytest.raises(ValueError, match="block to fill"):
        docblock.fill(text, BEGIN, END, "x")
