#!/usr/bin/env bash
# A throwaway Active Directory of the test city (realm STADT.EXAMPLE, domain STADT,
# DC=stadt,DC=example) for the LDAP sync tests: a real Samba AD DC (Debian's 4.17:
# apt-get install samba-ad-dc samba-ad-provision ldap-utils), everything it has in one directory.
# Samba's LDAP port cannot be changed (389/636 are fixed), so every DC runs in a network namespace
# of its own and the host reaches it through a veth pair. Needs root.
#
#   samba-ad.sh start DIR NS OCTET     creates network namespace NS and the veth pair ${NS}h
#                                      (host, 10.251.OCTET.1/30) / eth0 (in NS, 10.251.OCTET.2/30),
#                                      a test CA (DIR/ca.crt) and a server certificate for
#                                      IP:10.251.OCTET.2 and DNS:dc1.stadt.example, provisions the
#                                      domain in DIR/samba, starts the DC and loads the base data;
#                                      it then answers on ldap://10.251.OCTET.2 (StartTLS) and
#                                      ldaps://10.251.OCTET.2. A start on a DIR that was stopped
#                                      is a restart with the data kept (same OCTET).
#   samba-ad.sh stop DIR               stops the DC, removes the veth pair and the namespace; safe to
#                                      call twice and after a failed start
#   samba-ad.sh disable DIR SAM        sets ACCOUNTDISABLE (bit 2) in the user's userAccountControl
#   samba-ad.sh enable DIR SAM         clears it again
#   samba-ad.sh remove DIR SAM         deletes the user
#   samba-ad.sh add-users DIR N GROUP  CN=Person 00001 ... under OU=Mitarbeiter (sAMAccountName
#                                      user00001, mail user00001@stadt.example, no password,
#                                      userAccountControl 544 = enabled), all members of GROUP
#
# SAM and GROUP are sAMAccountName values (jmueller, VPN-Nutzer, strassenbau-tiefbau); the script
# finds the entry's DN itself. NS has at most 14 characters (an interface name has at most 15).
#
# Accounts: CN=Administrator,CN=Users,DC=stadt,DC=example / Admin-Secret-1;
# the reader heimweg uses, an ordinary domain user: CN=heimweg-reader,CN=Users,DC=stadt,DC=example
# (heimweg-reader) / Reader-Secret-1.
# Users in OU=Mitarbeiter,DC=stadt,DC=example, all userAccountControl 512:
# alice / Wonderland-1 (CN=Alice Example), bob / Builder-1 (CN=Bob Beispiel),
# jmueller / Grüße-1 (CN=Müller\, Jürgen). Global security groups in OU=Gruppen,DC=stadt,DC=example:
# VPN-Nutzer (all three) and CN=Straßenbau\, Tiefbau (sAMAccountName strassenbau-tiefbau; jmueller).
#
# Where Samba 4.17 differs from a Windows DC's defaults (seen with add-users 1100):
# - a simple bind over plain ldap:// without StartTLS is refused ("Strong(er) authentication
#   required"; ldap server require strong auth = yes, Samba's default), anonymous reads of the
#   root DSE still work;
# - MaxPageSize=1000 is not enforced: a search without paged results returns all 1,103 users with
#   result 0 (Windows: 1,000 and sizeLimitExceeded), a page size of 2,000 gives one page of
#   1,103, and Samba ignores a client's size limit (ldapsearch -z 5) as well.
set -euo pipefail
# Without this, a failure inside $(...) would not stop the function that runs there.
shopt -s inherit_errexit

BASE="DC=stadt,DC=example"
STAFF="OU=Mitarbeiter,$BASE"
GROUPS_OU="OU=Gruppen,$BASE"
ADMIN_DN="CN=Administrator,CN=Users,$BASE"
ADMIN_PW="Admin-Secret-1"
READER_DN="CN=heimweg-reader,CN=Users,$BASE"
READER_PW="Reader-Secret-1"
# groupType of a global security group: GLOBAL_GROUP (2) | SECURITY_ENABLED (0x80000000).
GLOBAL_SECURITY=-2147483646

# The caller's LDAP* variables (LDAPBASE, LDAPBINDDN, LDAPTLS_REQCERT=never, ...) must not change
# what the tools here do. Not LDAPNOINIT as in slapd.sh: it would also ignore LDAPTLS_CACERT, which
# is the only way to give ldapsearch a CA file (set per DIR in ldap_tool). /etc/ldap/ldap.conf is
# still read, but what it could set that matters here (URI, BASE, TLS_CACERT, TLS_REQCERT) is
# always given explicitly.
for v in $(compgen -e); do
  case $v in LDAP*) unset "$v" ;; esac
done

die() { echo "samba-ad.sh: $*" >&2; exit 1; }

usage() {
  sed -n '/^#   samba-ad.sh start/,/^#$/s/^# \{0,1\}//p' "$0" >&2
  exit 2
}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# A zombie (its parent has not reaped it yet) counts as gone.
is_alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

# Alive and samba: after a crash the pid may belong to someone else by now.
is_samba() {
  [ "$(cat "/proc/$1/comm" 2>/dev/null)" = samba ] && is_alive "$1"
}

# And in namespace NS: the pid may even belong to the samba of another DIR by now.
is_our_samba() {
  is_samba "$1" && [ "$(ip netns identify "$1" 2>/dev/null)" = "$2" ]
}

need_started() {
  if [ ! -f "$DIR/ip" ] || [ ! -f "$DIR/ca.crt" ]; then
    die "$DIR has no DC (no $DIR/ip; run start first)"
  fi
}

# Every LDAP tool talks TLS with the test CA, and refuses a certificate it does not verify.
ldap_tool() {
  LDAPTLS_CACERT="$DIR/ca.crt" LDAPTLS_REQCERT=demand "$@"
}

# Changes go in as Administrator over LDAPS: about 3 ms per added user, while samba-tool takes
# 0.23 s per call and a Python SamDB on the local sam.ldb (all users in one transaction) 5 ms.
as_admin() {
  local tool=$1
  shift
  need_started
  ldap_tool "$tool" -x -o nettimeout=10 -H "ldaps://$(cat "$DIR/ip")" -D "$ADMIN_DN" -w "$ADMIN_PW" "$@"
}

# RFC 4515: these four would change the filter's meaning.
filter_escape() {
  local s=$1
  s=${s//\\/\\5c}
  s=${s//\*/\\2a}
  s=${s//"("/\\28}
  s=${s//")"/\\29}
  printf %s "$s"
}

# The one entry matching FILTER in the domain, with ATTRS, as LDIF lines. Its "dn:" line is
# "dn:: <base64>" for a DN with non-ASCII characters; ldapmodify reads either form, so it is passed
# on as it is and never decoded. Search references (CN=Configuration, ...) have no "dn:" line.
find_entry() {
  local filter=$1 out n
  shift
  out=$(as_admin ldapsearch -LLL -o ldif-wrap=no -b "$BASE" -s sub "$filter" "$@")
  n=$(printf '%s\n' "$out" | grep -c '^dn:' || true)
  [ "$n" = 1 ] || die "$filter: $n entries, expected 1"
  printf '%s\n' "$out" | grep -v -e '^$' -e '^#' -e '^ref:'
}

user_filter() { printf '(&(objectCategory=person)(objectClass=user)(sAMAccountName=%s))' "$(filter_escape "$1")"; }
group_filter() { printf '(&(objectClass=group)(sAMAccountName=%s))' "$(filter_escape "$1")"; }

# unicodePwd is the password in double quotes, UTF-16LE (and base64 in LDIF).
unicode_pwd() { printf '"%s"' "$1" | iconv -f UTF-8 -t UTF-16LE | base64 -w0; }

base_ldif() {
  cat <<EOF
dn: $STAFF
objectClass: organizationalUnit
description: Staff

dn: $GROUPS_OU
objectClass: organizationalUnit
description: Groups

dn: $READER_DN
objectClass: user
sAMAccountName: heimweg-reader
userPrincipalName: heimweg-reader@stadt.example
description: the VPN gateway's directory sync
unicodePwd:: $(unicode_pwd "$READER_PW")
userAccountControl: 512

dn: CN=Alice Example,$STAFF
objectClass: user
sAMAccountName: alice
userPrincipalName: alice@stadt.example
givenName: Alice
sn: Example
displayName: Alice Example
mail: alice@stadt.example
unicodePwd:: $(unicode_pwd Wonderland-1)
userAccountControl: 512

dn: CN=Bob Beispiel,$STAFF
objectClass: user
sAMAccountName: bob
userPrincipalName: bob@stadt.example
givenName: Bob
sn: Beispiel
displayName: Bob Beispiel
mail: bob@stadt.example
unicodePwd:: $(unicode_pwd Builder-1)
userAccountControl: 512

dn: CN=Müller\, Jürgen,$STAFF
objectClass: user
sAMAccountName: jmueller
userPrincipalName: jmueller@stadt.example
givenName: Jürgen
sn: Müller
displayName: Müller, Jürgen
mail: juergen.mueller@stadt.example
unicodePwd:: $(unicode_pwd Grüße-1)
userAccountControl: 512

dn: CN=VPN-Nutzer,$GROUPS_OU
objectClass: group
sAMAccountName: VPN-Nutzer
groupType: $GLOBAL_SECURITY
member: CN=Alice Example,$STAFF
member: CN=Bob Beispiel,$STAFF
member: CN=Müller\, Jürgen,$STAFF

dn: CN=Straßenbau\, Tiefbau,$GROUPS_OU
objectClass: group
sAMAccountName: strassenbau-tiefbau
groupType: $GLOBAL_SECURITY
member: CN=Müller\, Jürgen,$STAFF
EOF
}

# The test CA and the DC's certificate, P-256 (Samba's GnuTLS reads the PKCS#8 PEM key that
# openssl writes). Samba refuses a key file that others may read (it must be 0600).
write_certs() {
  local ip=$1
  (
    umask 077
    cd "$DIR"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
      -subj "/CN=heimweg test CA (samba-ad.sh)" -keyout ca.key -out ca.crt \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -subj "/CN=dc1.stadt.example" -keyout tls.key -out tls.csr
    printf '%s\n' "subjectAltName=IP:$ip,DNS:dc1.stadt.example" \
      "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
      "extendedKeyUsage=serverAuth" >tls.ext
    openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
      -extfile tls.ext -out tls.crt
    rm -f tls.csr tls.ext ca.srl
    chmod 644 ca.crt tls.crt
  ) >"$DIR/openssl.log" 2>&1 || {
    cat "$DIR/openssl.log" >&2
    die "creating the certificates failed"
  }
}

provision() {
  local ip=$1 s="$DIR/samba"
  mkdir -p "$s/etc" "$s/run"
  # An empty smb.conf of its own: without -s, samba-tool reads /etc/samba/smb.conf and copies its
  # settings (log file = /var/log/samba/..., shares) into the new one. The --option settings end up
  # in DIR/samba/etc/smb.conf.
  : >"$s/etc/smb.conf"
  # --host-ip: otherwise provision looks for an address among the host's interfaces and warns.
  # server services = ldap: nothing else (no smbd, winbindd, KDC, RPC, DNS), so samba -M single is
  # one process with nothing else to stop. The run directories keep Samba out of /run/samba, where
  # two DCs would share one pid file. ldb:nosync: no fsync for a database thrown away after the
  # test (bulk adds 2.5 times faster).
  if ! samba-tool domain provision -s "$s/etc/smb.conf" --targetdir="$s" \
    --realm=STADT.EXAMPLE --domain=STADT --server-role=dc --dns-backend=NONE \
    --host-name=dc1 --host-ip="$ip" --adminpass="$ADMIN_PW" \
    --option="server services = ldap" \
    --option="tls keyfile = $DIR/tls.key" \
    --option="tls certfile = $DIR/tls.crt" \
    --option="tls cafile = " \
    --option="log file = $s/log" \
    --option="pid directory = $s/run" \
    --option="ncalrpc dir = $s/run/ncalrpc" \
    --option="winbindd socket directory = $s/run/winbindd" \
    --option="ntp signd socket directory = $s/run/ntp_signd" \
    --option="ldb:nosync = true" \
    >"$DIR/provision.log" 2>&1; then
    cat "$DIR/provision.log" >&2
    die "provisioning the domain failed"
  fi
}

# What this start created, for the cleanup when it fails half-way.
STARTED_NS=""
STARTED_PID=""

start_failed() {
  local rc=$?
  trap - EXIT
  if [ -n "$STARTED_PID" ] && is_alive "$STARTED_PID"; then
    kill -KILL "$STARTED_PID" 2>/dev/null || true
  fi
  if [ -n "$STARTED_NS" ]; then
    ip link del "${STARTED_NS}h" 2>/dev/null || true
    ip netns del "$STARTED_NS" 2>/dev/null || true
    rm -f "$DIR/ns"
  fi
  rm -f "$DIR/samba.pid"
  exit "$rc"
}

cmd_start() {
  [ $# = 3 ] || usage
  local ns=$2 octet=$3 ip host_ip t0 pid fresh=1 deadline t
  t0=$(now)
  for t in samba samba-tool ldapsearch ldapadd openssl ip iconv; do
    command -v "$t" >/dev/null ||
      die "$t is missing (apt-get install --no-install-recommends samba-ad-dc samba-ad-provision ldap-utils)"
  done
  [ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
  [[ $ns =~ ^[A-Za-z0-9_-]{1,14}$ ]] || die "NS must be 1-14 letters, digits, - or _: $ns"
  # No leading zeros: bash would read 037 as octal.
  if ! [[ $octet =~ ^(0|[1-9][0-9]{0,2})$ ]] || ((octet > 255)); then
    die "OCTET must be 0-255: $octet"
  fi
  ip="10.251.$octet.2"
  host_ip="10.251.$octet.1"
  mkdir -p "$1"
  # smb.conf needs absolute paths.
  DIR=$(cd "$1" && pwd)
  if [ -f "$DIR/samba.pid" ] && is_samba "$(cat "$DIR/samba.pid")"; then
    die "a DC is already running for $DIR (pid $(cat "$DIR/samba.pid"))"
  fi
  # The namespace and veth pair of a DC that died without a stop are this DIR's own: away with them.
  if [ -f "$DIR/ns" ]; then
    cmd_stop "$DIR"
  fi
  # Written once the base data is in: a start that failed half-way leaves no DC to restart.
  [ -e "$DIR/samba/ready" ] && fresh=0
  if [ -f "$DIR/ip" ] && [ "$(cat "$DIR/ip")" != "$ip" ]; then
    die "$DIR was set up for $(cat "$DIR/ip") (its certificate names that address); use the same OCTET"
  fi
  # Another instance (another DIR) on the same name or subnet would get its traffic mixed with ours.
  [ ! -e "/run/netns/$ns" ] || die "network namespace $ns exists already (another DC? else: ip netns del $ns)"
  ! ip link show "${ns}h" >/dev/null 2>&1 || die "interface ${ns}h exists already"
  if ip -o -4 addr show | grep -q " 10\.251\.$octet\.[0-9]*/"; then
    die "10.251.$octet.0/30 is in use on this host already"
  fi

  trap start_failed EXIT
  ip netns add "$ns"
  STARTED_NS=$ns
  echo "$ns" >"$DIR/ns"
  # The inner end goes straight into the namespace, so its name cannot collide with the host's.
  ip link add "${ns}h" type veth peer name eth0 netns "$ns"
  ip addr add "$host_ip/30" dev "${ns}h"
  ip link set "${ns}h" up
  ip -n "$ns" addr add "$ip/30" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up

  if [ ! -f "$DIR/ca.crt" ] || [ ! -f "$DIR/tls.crt" ] || [ ! -f "$DIR/tls.key" ]; then
    write_certs "$ip"
  fi
  echo "$ip" >"$DIR/ip"
  if ((fresh)); then
    rm -rf "$DIR/samba"
    provision "$ip"
  fi

  # ip netns exec execs samba after entering the namespace, so $! is samba itself (no wrapper).
  # -F: foreground, which -i would be too, but -i also exits when stdin ends. --debug-stdout: the
  # log goes to samba.log. --no-process-group: samba stays in the caller's process group, so a
  # Ctrl-C on the test run stops it as well. stdin is closed and the output goes to the log: a
  # caller that collects this script's output would otherwise wait for samba's end.
  ip netns exec "$ns" samba -s "$DIR/samba/etc/smb.conf" -M single -F --debug-stdout \
    --no-process-group </dev/null >"$DIR/samba.log" 2>&1 &
  pid=$!
  STARTED_PID=$pid
  echo "$pid" >"$DIR/samba.pid"
  # Waiting over LDAPS from the host also checks the veth pair, TLS and the certificate.
  deadline=$((SECONDS + 60))
  until ldap_tool ldapsearch -x -o nettimeout=2 -H "ldaps://$ip" -b "" -s base 1.1 >/dev/null 2>&1; do
    if ! is_alive "$pid"; then
      echo "samba-ad.sh: samba exited during start; log:" >&2
      cat "$DIR/samba.log" >&2
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      echo "samba-ad.sh: no answer on ldaps://$ip after 60 s; log:" >&2
      cat "$DIR/samba.log" >&2
      exit 1
    fi
    sleep 0.05
  done
  if ((fresh)); then
    base_ldif | as_admin ldapadd >/dev/null || die "loading the base data failed"
    : >"$DIR/samba/ready"
  fi
  trap - EXIT
  echo "samba-ad.sh: DC for $DIR up on $ip in $(since "$t0") s" >&2
}

cmd_stop() {
  [ $# = 1 ] || usage
  DIR=$1
  local pid pids ns="" i rc=0
  [ -d "$DIR" ] || return 0
  [ -f "$DIR/ns" ] && ns=$(cat "$DIR/ns")
  if [ -f "$DIR/samba.pid" ]; then
    pid=$(cat "$DIR/samba.pid")
    if is_our_samba "$pid" "$ns"; then
      kill -TERM "$pid"
      for ((i = 0; i < 500; i++)); do
        is_alive "$pid" || break
        sleep 0.02
      done
      if is_alive "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
        echo "samba-ad.sh: samba $pid did not exit within 10 s of SIGTERM; killed it" >&2
        rc=1
        for ((i = 0; i < 100; i++)); do
          is_alive "$pid" || break
          sleep 0.02
        done
      fi
    fi
    rm -f "$DIR/samba.pid"
  fi
  if [ -n "$ns" ]; then
    # Deleting one end of a veth pair deletes both. Deleting the namespace's name alone would not:
    # the namespace (and with it eth0) lives on while any process is still in it.
    if ip link show "${ns}h" >/dev/null 2>&1; then
      ip link del "${ns}h"
    fi
    if [ -e "/run/netns/$ns" ]; then
      pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
      [ -z "$pids" ] || echo "samba-ad.sh: processes left in namespace $ns: $pids" >&2
      ip netns del "$ns"
    fi
    rm -f "$DIR/ns"
  fi
  return "$rc"
}

# userAccountControl is a bit field, so only bit 2 (ACCOUNTDISABLE) changes; replace, so disabling
# a disabled user or enabling an enabled one is no error.
set_disabled() {
  local sam=$1 disabled=$2 entry dn uac
  entry=$(find_entry "$(user_filter "$sam")" userAccountControl)
  dn=$(printf '%s\n' "$entry" | grep '^dn:')
  uac=$(printf '%s\n' "$entry" | sed -n 's/^userAccountControl: //p')
  [[ $uac =~ ^[0-9]+$ ]] || die "$sam: no userAccountControl"
  if ((disabled)); then
    uac=$((uac | 2))
  else
    uac=$((uac & ~2))
  fi
  printf '%s\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: %s\n' "$dn" "$uac" |
    as_admin ldapmodify >/dev/null
}

cmd_disable() {
  [ $# = 2 ] || usage
  DIR=$1
  set_disabled "$2" 1
}

cmd_enable() {
  [ $# = 2 ] || usage
  DIR=$1
  set_disabled "$2" 0
}

# AD keeps a tombstone under CN=Deleted Objects and takes the user out of every group.
cmd_remove() {
  [ $# = 2 ] || usage
  DIR=$1
  local dn
  dn=$(find_entry "$(user_filter "$2")" 1.1 | grep '^dn:')
  printf '%s\nchangetype: delete\n' "$dn" | as_admin ldapmodify >/dev/null
}

cmd_add_users() {
  [ $# = 3 ] || usage
  DIR=$1
  local n=$2 group t0
  case $n in '' | *[!0-9]*) die "N must be a number: $n" ;; esac
  ((n >= 1 && n <= 99999)) || die "N must be 1-99999 (five-digit names)"
  t0=$(now)
  group=$(find_entry "$(group_filter "$3")" 1.1 | grep '^dn:')
  # No password: a password costs Samba its hashes and Kerberos keys per user (64 ms each).
  # userAccountControl 544 = NORMAL_ACCOUNT (512) | PASSWD_NOTREQD (32) is what AD accepts for an
  # enabled user without one (Samba also took 512, Windows would not); without it AD would add the
  # user disabled (546). One connection: samba -M single works on one request at a time anyway
  # (its CPU is busy all along), so a second ldapadd would gain nothing.
  N=$n STAFF=$STAFF awk 'BEGIN {
    for (i = 1; i <= ENVIRON["N"]; i++)
      printf "dn: CN=Person %05d,%s\nobjectClass: user\nsAMAccountName: user%05d\nuserPrincipalName: user%05d@stadt.example\nsn: Person\ndisplayName: Person %05d\nmail: user%05d@stadt.example\nuserAccountControl: 544\n\n",
        i, ENVIRON["STAFF"], i, i, i, i
  }' | as_admin ldapadd >/dev/null || die "adding the users failed"
  # Members go in 5,000 per modify instead of one modify per user; AD writes each member's
  # memberOf (a back link) itself. 1,100 members in one modify: 0.16 s.
  N=$n STAFF=$STAFF GROUP=$group awk 'BEGIN {
    for (i = 1; i <= ENVIRON["N"]; i++) {
      if (i % 5000 == 1) printf "%s\nchangetype: modify\nadd: member\n", ENVIRON["GROUP"]
      printf "member: CN=Person %05d,%s\n", i, ENVIRON["STAFF"]
      if (i % 5000 == 0 || i == ENVIRON["N"]) printf "\n"
    }
  }' | as_admin ldapmodify >/dev/null || die "adding the members to $3 failed"
  echo "samba-ad.sh: added $n users in $(since "$t0") s" >&2
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case $cmd in
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  disable) cmd_disable "$@" ;;
  enable) cmd_enable "$@" ;;
  remove) cmd_remove "$@" ;;
  add-users) cmd_add_users "$@" ;;
  *) usage ;;
esac
