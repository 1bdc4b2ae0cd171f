"""The landing page: signed-in users go to their dashboard; others see the welcome and the sign-in."""

from typing import Any

from flask import redirect, url_for
from flask_appbuilder import IndexView, expose
from flask_login import current_user


class HomeView(IndexView):
    index_template = "tabula/index.html"

    @expose("/")
    def index(self) -> Any:
        if current_user.is_authenticated and self.appbuilder.sm.has_access("can_read", "Dashboard"):
            return redirect(url_for("DashboardView.show"))
        return self.render_template(self.index_template, appbuilder=self.appbuilder)
