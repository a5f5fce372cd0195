"""The website's entry point: `streamlit run ui/app.py` (what `twotower up` starts)."""

from pathlib import Path

import streamlit as st

PAGES = Path(__file__).parent / "views"  # not "pages": Streamlit would auto-list it
ICON = Path(__file__).parent / "assets" / "icon.png"

st.set_page_config(page_title="Two-Tower Search", page_icon=str(ICON))  # a local file (CSP)
navigation = st.navigation(
    [
        st.Page(PAGES / "search.py", title="Search", icon=":material/search:", default=True),
        st.Page(
            PAGES / "status.py", title="Status", icon=":material/monitoring:", url_path="status"
        ),
    ],
    position="top",
)
navigation.run()
