"""pagemig-gpu: the gpu driver for pagemig."""
