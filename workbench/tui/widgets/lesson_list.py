"""The list of lessons on the lessons screen (one option per lesson file)."""

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from workbench.course.lessons import Lesson


class LessonList(OptionList):
    def show(self, lessons: list[Lesson], current: str | None = None) -> None:
        self.clear_options()
        for lesson in lessons:
            label = Text(no_wrap=True, overflow="ellipsis")
            number = lesson.path.stem.split("-", 1)[0]
            label.append(f"{number} ", style="dim")
            label.append(lesson.title, style="red" if lesson.problem else "")
            self.add_option(Option(label, id=lesson.name))
        if current is not None:
            self.highlight_lesson(current)

    def highlight_lesson(self, name: str) -> None:
        try:
            self.highlighted = self.get_option_index(name)
        except Exception:  # OptionDoesNotExist: a lesson that is not in the folder
            pass
