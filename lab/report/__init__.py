"""Reports: text, Markdown, HTML (with plots), CSV and JSON renderers over a campaign's records."""
