# pagemig oracle workload "zram", sourced by init.sh inside the guest.
# Sets up a zram swap device from the UML modules, then runs frag over more memory
# than the guest has (ZRAM_FILL_PERCENT of MemTotal), writing every page so that none
# is "same-filled": the overflow is compressed into zsmalloc pages, which in 6.1 are
# movable, and freeing 3 of every 4 pages leaves them sparse.
M="/usr/lib/uml/modules/$(uname -r)"
insmod "$M/kernel/mm/zsmalloc.ko" || fail "insmod zsmalloc.ko from $M"
insmod "$M/kernel/drivers/block/zram/zram.ko" num_devices=1 || fail "insmod zram.ko from $M"
i=0
while [ ! -e /sys/block/zram0/disksize ]; do
    sleep 0.1; i=$((i + 1)); [ "$i" -lt 50 ] || fail "no /sys/block/zram0"
done
echo "$ZRAM_DISKSIZE" > /sys/block/zram0/disksize || fail "zram disksize $ZRAM_DISKSIZE"
[ -b /dev/zram0 ] || mknod /dev/zram0 b "$(cut -d: -f1 /sys/block/zram0/dev)" "$(cut -d: -f2 /sys/block/zram0/dev)"
mkswap /dev/zram0 > /dev/null || fail "mkswap /dev/zram0"
swapon /dev/zram0 || fail "swapon /dev/zram0"
mt_kb=$(sed -n 's/^MemTotal: *\([0-9]*\) kB$/\1/p' /proc/meminfo)
mib=$((mt_kb * ZRAM_FILL_PERCENT / 100 / 1024))
echo "frag_mib $mib" >> "$R/times.info"
"$R/frag" "$mib" "$FRAG_KEEP" "$FRAG_DEN" "$R/ready" 1 > "$R/frag.log" 2>&1 &
