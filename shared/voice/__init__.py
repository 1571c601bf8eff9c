"""Voice training: turning uploaded material into clean text and learning a rep's style from it."""
