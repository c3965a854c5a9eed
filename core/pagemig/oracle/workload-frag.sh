# pagemig oracle workload "frag", sourced by init.sh inside the guest.
# Runs frag over FRAG_PERCENT of MemTotal (or FRAG_MIB), keeping FRAG_KEEP of every
# FRAG_DEN pages; frag writes $R/ready once memory is in place and then sleeps.
mt_kb=$(sed -n 's/^MemTotal: *\([0-9]*\) kB$/\1/p' /proc/meminfo)
mib=${FRAG_MIB:-$((mt_kb * FRAG_PERCENT / 100 / 1024))}
echo "frag_mib $mib" >> "$R/times.info"
"$R/frag" "$mib" "$FRAG_KEEP" "$FRAG_DEN" "$R/ready" "$FRAG_TOUCH" > "$R/frag.log" 2>&1 &
