"""`lab serve`: a read-only web view of campaigns, live progress, reports and comparisons over the results database."""
