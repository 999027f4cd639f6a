"""The regulator console (DESIGN §13): server-rendered pages over the three services' APIs,
acting with the signed-in person's own token; it keeps no store of its own."""
