"""Shared parameter text filled into docstrings (the pattern of scipy.ndimage._ni_docstrings)."""


def docfiller(texts: dict):
    """Return a decorator that replaces ``{name}`` in a docstring with ``texts[name]``.

    Plain replacement rather than ``str.format``: the docstrings hold LaTeX braces.

    >>> @docfiller({"x": "x : float"})
    ... def f(x):
    ...     '''{x}'''
    >>> f.__doc__
    'x : float'
    """

    def fill(func):
        doc = func.__doc__
        for key, text in texts.items():
            doc = doc.replace("{" + key + "}", text)
        func.__doc__ = doc
        return func

    return fill
