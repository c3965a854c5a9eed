"""pagemig-balloon: the balloon driver for pagemig."""
