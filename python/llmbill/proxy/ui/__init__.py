"""The admin UI at /ui: server-rendered pages, a small hand-written script and stylesheet shipped as
package data (no build step), and sign-in with the master key into a session cookie (sessions.py).

The page's script calls the ordinary management API (/budget/..., /customer/..., /key/...,
/global/spend/report, /health/readiness) with that cookie; app.py's authentication accepts a live
session as the master key. Routes:

    GET  /ui                  the sign-in form, or the admin page for a signed-in browser
    POST /ui/login            master_key (form or JSON) → session cookie, 303 to /ui; 401 when wrong
    POST /ui/logout           ends the session (needs the session's CSRF header)
    GET  /ui/static/<file>    app.js, app.css
"""
