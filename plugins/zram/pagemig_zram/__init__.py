"""pagemig-zram: the zram driver for pagemig."""
