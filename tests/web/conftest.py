from tests.web.demodata import demo  # noqa: F401  (session fixture)
