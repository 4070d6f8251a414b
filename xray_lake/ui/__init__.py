"""`xray-lake ui`: a local, read-only web view of a lake (SPEC §9).

`queries` reads each page's data through the lake's query layer (paged in SQL), `charts`
draws server-side SVG, `app` is the Starlette application and `serve` binds and runs it.
Nothing here is imported by `import xray_lake` or by `xray-lake --help`: Starlette, Jinja2
and uvicorn are the optional `[ui]` extra.
"""
