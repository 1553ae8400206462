"""QuSeC's live dashboard: the page's view model (pure), its access rules, its web edge and page."""
