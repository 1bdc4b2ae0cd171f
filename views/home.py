"""The landing page: a signed-in user's dashboard; for a visitor, the welcome and the sign-in."""

from typing import Any

from flask_appbuilder import IndexView, expose
from flask_login import current_user


class HomeView(IndexView):
    index_template = "tabula/index.html"

    @expose("/")
    def index(self) -> Any:
        if current_user.is_authenticated and self.appbuilder.sm.has_access("can_read", "Dashboard"):
            from views.dashboard import page

            return page(self)
        return self.render_template(self.index_template, appbuilder=self.appbuilder)
