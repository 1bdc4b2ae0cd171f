"""The landing page."""

from flask_appbuilder import IndexView


class HomeView(IndexView):
    index_template = "tabula/index.html"
