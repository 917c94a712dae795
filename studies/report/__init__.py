"""The report room: ``figures`` draws (one function a figure), ``page`` lays them out as one HTML page,
``png`` renders figures as PNG files. Everything it shows is read from the storage through ``studies.store``."""

from studies.report.page import Section, build_sections, render_page, write_report
from studies.report.png import write_figure_pngs

__all__ = ["Section", "build_sections", "render_page", "write_figure_pngs", "write_report"]
