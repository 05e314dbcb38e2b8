"""The dashboard (``/ui``): templates, vendored assets, and the section registry.

Other packages add pages with :func:`api.ui.nav.register_section`.
"""
