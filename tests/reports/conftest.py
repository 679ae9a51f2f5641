from tests.notify.conftest import smtp_server  # noqa: F401
from tests.web.demodata import demo  # noqa: F401  (session fixture)
