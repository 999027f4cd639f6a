"""The console's pages, one module per part: sign-in, grants, actions, live streams,
breaches and decisions, dead letters."""
