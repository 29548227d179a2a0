"""PLACEHOLDER: the exception-case register (issue 4) replaces this."""


class CaseActivities:
    def __init__(self, engine: object) -> None:
        self.engine = engine
