"""Found by trying the tracks as a learner from the CLI: what `check`'s report and the track commands show."""

from rich.console import Console

from workbench.check.report import components_table

LONG = "tokenizing_distributed_data_loader_with_state"


def render(comps, width):
    console = Console(width=width, record=True, color_system=None)
    console.print(components_table(comps, console.width))
    return console.export_text()


def test_long_component_name_leaves_the_reason_readable_at_80_columns():
    comps = [dict(qualname=LONG, status="todo", phase=7, detail=f"TODO: {LONG}: pack <|bos|> + document tokens"),
             dict(qualname="_advance", status="pass", phase=7, detail="consumes n tokens from the front, in place")]
    text = render(comps, 80)
    assert "TODO: pack <|bos|> + document" in text  # the reason keeps a readable width, its name not repeated
    assert "consumes n tokens from the front" in text
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "".join(line[4:30].strip() for line in text.splitlines()[3:5]) == LONG  # folded, nothing cut
