"""Secrets in command lines as real processes carry them: masked (each one
was shown whole to anyone who could read a process node), and what is not
secret left readable."""

from __future__ import annotations

import pytest

from trioscope_probe._masking import MASK, cut_argv, masked_cmdline, masked_variable

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk"

MASKED = [
    # HTTP credentials in headers (curl, wget), the scheme kept.
    (["curl", "-sS", "-H", f"Authorization: Bearer {JWT}", "https://api.example.com/v1/me"],
     "curl -sS -H Authorization: Bearer *** https://api.example.com/v1/me"),
    (["curl", "--header", "X-Api-Key: abc123secret", "https://api.example.com"],
     "curl --header X-Api-Key: *** https://api.example.com"),
    (["curl", "-H", "Authorization: Basic YWRtaW46aHVudGVyMg==", "http://es:9200/_cat/indices"],
     "curl -H Authorization: Basic *** http://es:9200/_cat/indices"),
    (["curl", "-H", "authorization: bearer abc.def.ghi", "http://h"], "curl -H authorization: bearer *** http://h"),
    (["curl", "-H", "Authorization: token ghp_16C7e42F292c6912E7710c838347Ae178B4a", "https://api.github.com/user"],
     "curl -H Authorization: token *** https://api.github.com/user"),
    (["curl", "-H", "Authorization: SSWS 00QCjAl4MlV-WPXM", "https://okta"],  # a scheme we do not know: all of it
     "curl -H Authorization: *** https://okta"),
    (["curl", "-H", "PRIVATE-TOKEN: glpat-xxxxxxxxxxxxxxxxxxxx", "https://gitlab.example.com/api/v4/projects"],
     "curl -H PRIVATE-TOKEN: *** https://gitlab.example.com/api/v4/projects"),
    (["curl", "-H", "X-Auth-Token:abc123", "http://h"], "curl -H X-Auth-Token:*** http://h"),
    (["curl", "-H", "Cookie: sessionid=abc; csrftoken=def", "https://h"], "curl -H Cookie: *** https://h"),
    (["curl", "-H", "X-Session-Id: 5f2b9c", "https://h"], "curl -H X-Session-Id: *** https://h"),
    (["curl", "-HAuthorization: Bearer abc", "https://h"], "curl -HAuthorization: Bearer *** https://h"),
    (["wget", "--header=Authorization: Bearer abc123", "https://h/file"],
     "wget --header=Authorization: Bearer *** https://h/file"),
    (["http-client", "Authorization: Bearer abc123"], "http-client Authorization: Bearer ***"),
    (["app", "--oauth2-bearer", "abc123"], "app --oauth2-bearer ***"),
    # curl's user:password and cookies.
    (["curl", "-u", "admin:hunter2", "http://localhost:9200"], "curl -u admin:*** http://localhost:9200"),
    (["curl", "-uadmin:hunter2", "http://h"], "curl -uadmin:*** http://h"),
    (["curl", "--user", "admin:hunter2", "http://h"], "curl --user admin:*** http://h"),
    (["curl", "--user=admin:hunter2", "http://h"], "curl --user=admin:*** http://h"),
    (["curl", "-x", "http://proxy:3128", "-U", "bob:pw", "http://h"], "curl -x http://proxy:3128 -U bob:*** http://h"),
    (["/usr/bin/curl", "-b", "session=abc123", "https://h"], "/usr/bin/curl -b *** https://h"),
    (["curl", "--cookie", "sid=abc; csrftoken=def", "https://h"], "curl --cookie *** https://h"),
    # JSON in an argument: a member named like a secret (its value a string or a number), across spaces.
    (["curl", "-d", '{"user":"bob","password":"hunter2x-1"}', "http://h"],
     'curl -d {"user":"bob","password":"***"} http://h'),
    (["app", '{"db": {"host": "x", "password": "hunter2x-2"}}'], 'app {"db": {"host": "x", "password": "***"}}'),
    (["app", '--config={"password":"hunter2x-3"}'], 'app --config={"password":"***"}'),
    (["app", '{"api_token": 12345, "name": "ok"}'], 'app {"api_token": "***", "name": "ok"}'),
    (["curl", "-d", '{"pw":"hunter2","db_pw":"x"}', "http://h"], 'curl -d {"pw":"***","db_pw":"***"} http://h'),
    (["sh", "-c", """curl -d '{"password": "s3 cr"}' http://h"""], """sh -c curl -d '{"password": "***"}' http://h"""),
    # A Java system property whose name ends in pw.
    (["java", "-Dpw=hunter2x-5", "-jar", "app.jar"], "java -Dpw=*** -jar app.jar"),
    # URLs: passwords, tokens as users, secret parameters.
    (["curl", "https://h/?access_token=zzz"], "curl https://h/?access_token=***"),
    (["curl", "https://h/x?page=2&api_key=k1&limit=10"], "curl https://h/x?page=2&api_key=***&limit=10"),
    (["aws", "s3", "cp", "https://b.s3.amazonaws.com/k?X-Amz-Expires=3600&X-Amz-Credential=AKIA%2F20240101"
      "&X-Amz-Signature=abc123", "."],
     "aws s3 cp https://b.s3.amazonaws.com/k?X-Amz-Expires=3600&X-Amz-Credential=***&X-Amz-Signature=*** ."),
    (["azcopy", "copy", "https://a.blob.core.windows.net/c?sv=2022-11-02&sig=AbC%3D", "/data"],
     "azcopy copy https://a.blob.core.windows.net/c?sv=2022-11-02&sig=*** /data"),
    (["java", "-jar", "app.jar", "--url=jdbc:mysql://db:3306/shop?user=app&password=hunter2&useSSL=true"],
     "java -jar app.jar --url=jdbc:mysql://db:3306/shop?user=app&password=***&useSSL=true"),
    (["sqlcmd", "-C", "Server=db;Database=shop;User Id=sa;Password=hunter2;"],
     "sqlcmd -C Server=db;Database=shop;User Id=sa;Password=***;"),
    (["git", "clone", "https://x-access-token:ghs_abc123@github.com/o/r.git"],
     "git clone https://x-access-token:***@github.com/o/r.git"),
    (["git", "clone", "https://ghp_abc123@github.com/o/r.git"], "git clone https://***@github.com/o/r.git"),
    (["redis-cli", "-u", "redis://default:hunter2@cache:6379"], "redis-cli -u redis://default:***@cache:6379"),
    (["mongodump", "--uri", "mongodb://admin:hunter2@mongo:27017/shop"],
     "mongodump --uri mongodb://admin:***@mongo:27017/shop"),
    # Tools taking a password under a short flag.
    (["mysql", "-h", "db", "-u", "root", "-pHunter2", "shop"], "mysql -h db -u root -p*** shop"),
    (["mysqldump", "-uroot", "-pHunter2", "--all-databases"], "mysqldump -uroot -p*** --all-databases"),
    (["/usr/bin/mariadb-admin", "-pS3cret", "status"], "/usr/bin/mariadb-admin -p*** status"),
    (["docker", "exec", "-it", "db", "mysql", "-uroot", "-pHunter2"], "docker exec -it db mysql -uroot -p***"),
    (["mysql", "--password=Hunter2", "shop"], "mysql --password=*** shop"),
    (["redis-cli", "-h", "cache", "-a", "hunter2", "--no-auth-warning", "ping"],
     "redis-cli -h cache -a *** --no-auth-warning ping"),
    (["sshpass", "-p", "hunter2", "ssh", "admin@host"], "sshpass -p *** ssh admin@host"),
    (["mongosh", "-u", "admin", "-p", "hunter2", "--authenticationDatabase", "admin"],
     "mongosh -u admin -p *** --authenticationDatabase admin"),
    (["ldapsearch", "-x", "-D", "cn=admin,dc=example,dc=org", "-w", "hunter2", "-b", "dc=example,dc=org"],
     "ldapsearch -x -D cn=admin,dc=example,dc=org -w *** -b dc=example,dc=org"),
    (["sqlcmd", "-S", "db", "-U", "sa", "-P", "Hunter2!"], "sqlcmd -S db -U sa -P ***"),
    (["mosquitto_sub", "-h", "broker", "-p", "8883", "-u", "iot", "-P", "hunter2", "-t", "sensors/#"],
     "mosquitto_sub -h broker -p 8883 -u iot -P *** -t sensors/#"),
    (["mosquitto_pub", "--pw", "hunter2", "-t", "lights", "-m", "on"], "mosquitto_pub --pw *** -t lights -m on"),
    # Samba's user%password, lftp's user,password, FreeRDP's /p:, Oracle's user/password@db.
    (["smbclient", "//srv/share", "-U", "alice%hunter2"], "smbclient //srv/share -U alice%***"),
    (["smbclient", "//srv/share", "-Ualice%hunter2"], "smbclient //srv/share -Ualice%***"),
    (["rpcclient", "--user=alice%hunter2", "srv"], "rpcclient --user=alice%*** srv"),
    (["sh", "-c", "smbget -U bob%hunter2 smb://s/x"], "sh -c smbget -U bob%*** smb://s/x"),
    (["lftp", "-u", "alice,hunter2", "sftp://h"], "lftp -u alice,*** sftp://h"),
    (["xfreerdp", "/v:host", "/u:alice", "/p:hunter2", "/cert:ignore"], "xfreerdp /v:host /u:alice /p:*** /cert:ignore"),
    (["xfreerdp3", "/gp:hunter2", "/pth:abc123"], "xfreerdp3 /gp:*** /pth:***"),
    (["rdesktop", "-u", "alice", "-p", "hunter2", "host"], "rdesktop -u alice -p *** host"),
    (["sqlplus", "scott/hunter2@orcl"], "sqlplus scott/***@orcl"),
    (["sqlplus", "-s", "scott/hunter2@//db:1521/svc", "@/opt/run.sql"],
     "sqlplus -s scott/***@//db:1521/svc @/opt/run.sql"),
    (["sqlplus", "sys/hunter2 as sysdba"], "sqlplus sys/*** as sysdba"),
    (["sh", "-c", "sqlplus -L scott/hunter2 @scripts/a.sql"], "sh -c sqlplus -L scott/*** @scripts/a.sql"),
    (["expdp", "userid=scott/hunter2", "directory=d", "dumpfile=x.dmp"], "expdp userid=scott/*** directory=d dumpfile=x.dmp"),
    (["sqlldr", "control=a/b.ctl", "scott/hunter2"], "sqlldr control=a/b.ctl scott/***"),
    # Other tools' short flags; options in a comma-separated list; httpie's request items.
    (["ipmitool", "-I", "lanplus", "-H", "bmc", "-U", "admin", "-P", "hunter2", "power", "status"],
     "ipmitool -I lanplus -H bmc -U admin -P *** power status"),
    (["etcdctl", "--user", "root:hunter2", "get", "/k"], "etcdctl --user root:*** get /k"),
    (["etcdctl", "--user=root:hunter2", "get", "/k"], "etcdctl --user=root:*** get /k"),
    (["mount", "-t", "cifs", "//srv/s", "/mnt", "-o", "username=alice,password=hunter2,uid=1000"],
     "mount -t cifs //srv/s /mnt -o username=alice,password=***,uid=1000"),
    (["sshfs", "-o", "reconnect,password=hunter2", "u@h:/", "/mnt"], "sshfs -o reconnect,password=*** u@h:/ /mnt"),
    (["http", "POST", "example.com", "Private-Token:hunter2", "name=x"], "http POST example.com Private-Token:*** name=x"),
    (["http", "example.com", "access_token==hunter2"], "http example.com access_token==***"),
    # Registry logins: -p is the password of login only.
    (["docker", "login", "-u", "ci", "-p", "hunter2", "registry.example.com"],
     "docker login -u ci -p *** registry.example.com"),
    (["docker", "login", "--password", "hunter2", "r.example.com"], "docker login --password *** r.example.com"),
    (["docker", "login", "--password=hunter2", "r.example.com"], "docker login --password=*** r.example.com"),
    (["/usr/bin/docker", "--config", "/srv/ci/.docker", "login", "-phunter2", "r.example.com"],
     "/usr/bin/docker --config /srv/ci/.docker login -p*** r.example.com"),
    (["sudo", "podman", "login", "-u", "ci", "-p", "hunter2", "quay.io"], "sudo podman login -u ci -p *** quay.io"),
    (["nerdctl", "login", "-p", "hunter2", "r.example.com"], "nerdctl login -p *** r.example.com"),
    (["buildah", "login", "--username", "ci", "-p", "hunter2", "r.example.com"],
     "buildah login --username ci -p *** r.example.com"),
    (["skopeo", "login", "-p", "hunter2", "r.example.com"], "skopeo login -p *** r.example.com"),
    (["oras", "login", "-u", "ci", "-p", "hunter2", "localhost:5000"], "oras login -u ci -p *** localhost:5000"),
    (["helm", "registry", "login", "r.example.com", "-u", "ci", "-p", "hunter2"],
     "helm registry login r.example.com -u ci -p ***"),
    (["helm", "registry", "login", "r.example.com", "--password=hunter2"],
     "helm registry login r.example.com --password=***"),
    (["bash", "/usr/bin/az", "login", "--service-principal", "-u", "app-id", "-p", "hunter2", "--tenant", "t1"],
     "bash /usr/bin/az login --service-principal -u app-id -p *** --tenant t1"),
    (["/opt/az/bin/python3", "-sm", "azure.cli", "acr", "login", "-n", "reg", "-u", "ci", "-p", "hunter2"],
     "/opt/az/bin/python3 -sm azure.cli acr login -n reg -u ci -p ***"),
    (["sh", "-c", "docker login -u ci -p hunter2 r.example.com && docker run -p 8080 r.example.com/app"],
     "sh -c docker login -u ci -p *** r.example.com && docker run -p 8080 r.example.com/app"),
    (["skopeo", "copy", "--src-creds", "ci:hunter2", "--dest-creds=ci:hunter3", "docker://a/app", "docker://b/app"],
     "skopeo copy --src-creds ci:*** --dest-creds=ci:*** docker://a/app docker://b/app"),
    (["podman", "pull", "--creds", "ci:hunter2", "quay.io/o/app"], "podman pull --creds ci:*** quay.io/o/app"),
    # httpie and xh: -a user:password, or a token (-A bearer) masked whole.
    (["http", "-a", "admin:hunter2", "https://h/api"], "http -a admin:*** https://h/api"),
    (["https", "--auth", "admin:hunter2", "h/api"], "https --auth admin:*** h/api"),
    (["http", "--auth=admin:hunter2", "POST", "h/api", "name=x"], "http --auth=admin:*** POST h/api name=x"),
    (["xh", "-a", "admin:hunter2", "h/api"], "xh -a admin:*** h/api"),
    (["http", "-A", "bearer", "-a", JWT, "https://h/api"], "http -A bearer -a *** https://h/api"),
    (["xh", "-a", "abc123", "h/api"], "xh -a *** h/api"),  # no colon: a user or a token (-A after -a)
    (["/usr/bin/python3", "/usr/bin/http", "-a", "admin:hunter2", "https://h/api"],
     "/usr/bin/python3 /usr/bin/http -a admin:*** https://h/api"),
    (["python3", "-m", "httpie", "-aadmin:hunter2", "h/api"], "python3 -m httpie -aadmin:*** h/api"),
    (["sh", "-c", "http -a admin:hunter2 https://h/api | jq ."], "sh -c http -a admin:*** https://h/api | jq ."),
    # Flags and variables named like a secret.
    (["app", "--auth", "hunter2"], "app --auth ***"),
    (["redis-server", "--requirepass", "hunter2", "--masterauth", "hunter3"],
     "redis-server --requirepass *** --masterauth ***"),
    (["openssl", "enc", "-aes-256-cbc", "-passin", "pass:hunter2"], "openssl enc -aes-256-cbc -passin ***"),
    (["env", "DB_PASSWORD=x", "MYSQL_PWD=y", "REDISCLI_AUTH=z", "MODE=prod", "app"],
     "env DB_PASSWORD=*** MYSQL_PWD=*** REDISCLI_AUTH=*** MODE=prod app"),
    (["java", "-Djavax.net.ssl.keyStorePassword=changeit", "-jar", "app.jar"],
     "java -Djavax.net.ssl.keyStorePassword=*** -jar app.jar"),
    (["helm", "install", "db", "bitnami/postgresql", "--set", "auth.postgresPassword=hunter2"],
     "helm install db bitnami/postgresql --set auth.postgresPassword=***"),
    (["vault", "login", "-method=userpass", "username=admin", "password=hunter2"],
     "vault login -method=userpass username=admin password=***"),
    (["kubectl", "--token=abc123", "get", "pods"], "kubectl --token=*** get pods"),
    (["app", "--password=two words", "--port", "80"], "app --password=*** --port 80"),
    # One argument holding a command line (sh -c): word by word, quotes kept.
    (["sh", "-c", f"curl -fsS -H 'Authorization: Bearer {JWT}' https://h/x?token=t&a=b"],
     "sh -c curl -fsS -H 'Authorization: Bearer ***' https://h/x?token=***&a=b"),
    (["sh", "-c", 'curl -H "X-Api-Key: abc123" -u admin:pw https://h'],
     'sh -c curl -H "X-Api-Key: ***" -u admin:*** https://h'),
    (["bash", "-c", "mysql -uroot -pHunter2 -e 'show databases'"], "bash -c mysql -uroot -p*** -e 'show databases'"),
    (["sh", "-c", "export API_TOKEN=abc; exec ./run"], "sh -c export API_TOKEN=***; exec ./run"),
    (["sh", "-c", "echo 'Cookie: a=1; b=2' > /tmp/h"], "sh -c echo 'Cookie: ***; ***' > /tmp/h"),
    (["psql", "host=db user=app password=hunter2 dbname=shop"], "psql host=db user=app password=*** dbname=shop"),
    (["sh", "-c", "echo Bearer abc123"], "sh -c echo Bearer ***"),
    # A quoted header in a nested line: its value up to the closing quote.
    (["sh", "-c", "curl --header='X-Api-Key: AbC123xyz' https://h"], "sh -c curl --header='X-Api-Key: ***' https://h"),
    (["sh", "-c", "curl -H'X-Api-Key: AbC123xyz' https://h"], "sh -c curl -H'X-Api-Key: ***' https://h"),
    (["sh", "-c", 'wget --header="X-Api-Key: AbC123xyz" https://h'], 'sh -c wget --header="X-Api-Key: ***" https://h'),
    # A quoted value holding spaces, in a nested line: masked up to its closing quote.
    (["sh", "-c", "run --password 'correct horse battery staple' --port 80"],
     "sh -c run --password '*** *** *** ***' --port 80"),
    (["sh", "-c", 'mysql -p"hunter 2" shop'], 'sh -c mysql -p"*** ***" shop'),
    (["sh", "-c", "curl -u 'admin:hunter 2' https://h"], "sh -c curl -u 'admin:*** ***' https://h"),
    (["sh", "-c", "redis-cli -a 'hunter 2' ping"], "sh -c redis-cli -a '*** ***' ping"),
    (["sh", "-c", 'app --password="hunter 2" --port 80'], 'sh -c app --password="*** ***" --port 80'),
    (["sh", "-c", 'app "--password=hunter 2" --port 80'], 'sh -c app "--password=*** ***" --port 80'),
    (["sh", "-c", "echo 'a token=hunter2' ; curl -u a:hunter3 https://h"],
     "sh -c echo 'a token=***' ; curl -u a:*** https://h"),
    # A flag taking an assignment whose name says secret.
    (["docker", "run", "--env=POSTGRES_PASSWORD=hunter2", "postgres:16"],
     "docker run --env=POSTGRES_PASSWORD=*** postgres:16"),
    (["docker", "build", "--build-arg=NPM_TOKEN=abc123", "."], "docker build --build-arg=NPM_TOKEN=*** ."),
    (["kubectl", "create", "secret", "generic", "db", "--from-literal=password=hunter2"],
     "kubectl create secret generic db --from-literal=password=***"),
    (["terraform", "apply", "-var=db_password=hunter2"], "terraform apply -var=db_password=***"),
    (["helm", "upgrade", "db", "--set-string=db.password=hunter2"], "helm upgrade db --set-string=db.password=***"),
    (["ansible-playbook", "--extra-vars=ansible_password=hunter2", "site.yml"],
     "ansible-playbook --extra-vars=ansible_password=*** site.yml"),
    # A variable before a nested line's command: its value only, the rest walked.
    (["sh", "-c", "FOO_TOKEN=hunter2 python app.py --port 80"], "sh -c FOO_TOKEN=*** python app.py --port 80"),
    (["sh", "-c", "FOO_TOKEN='hunter 2' mysql -pHunter2"], "sh -c FOO_TOKEN='*** ***' mysql -p***"),
    # Tools where a command stands: after a separator or a runner's few words.
    (["sudo", "-u", "root", "mysql", "-pHunter2"], "sudo -u root mysql -p***"),
    (["sh", "-c", "cd /srv && mysql -pHunter2"], "sh -c cd /srv && mysql -p***"),
    (["sh", "-c", "ls; curl -b sid=hunter2 https://h"], "sh -c ls; curl -b *** https://h"),
    # URL passwords holding a URL's signs: up to the @ a host follows.
    (["redis-cli", "-u", "redis://:pa/ss@h"], "redis-cli -u redis://:***@h"),
    (["psql", "postgres://user:pa#ss@h/db"], "psql postgres://user:***@h/db"),
    (["psql", "postgres://user:p@ss@h:5432/db?sslmode=require"], "psql postgres://user:***@h:5432/db?sslmode=require"),
    (["redis-cli", "-u", "redis://:6379@h"], "redis-cli -u redis://:***@h"),  # digits, not a port: an @ follows
    # user:password@host without a scheme: Go DSNs, proxies, ssh-like tools.
    (["migrate", "--dsn", "user:DSNPW@tcp(db:3306)/x"], "migrate --dsn user:***@tcp(db:3306)/x"),
    (["app", "--dsn=user:DSNPW@tcp(db:3306)/x?parseTime=true"], "app --dsn=user:***@tcp(db:3306)/x?parseTime=true"),
    (["app", "user:CLIPW@host"], "app user:***@host"),
    (["app", "DSN=app:DSNPW@unix(/run/mysqld.sock)/shop"], "app DSN=app:***@unix(/run/mysqld.sock)/shop"),
    (["curl", "-x", "bob:CLIPW@proxy:3128", "https://h"], "curl -x bob:***@proxy:3128 https://h"),
    (["sh", "-c", "gh-ost --dsn 'root:DSNPW@tcp(db)/x'"], "sh -c gh-ost --dsn 'root:***@tcp(db)/x'"),
    # JSON Web Tokens: a flag named jwt, and any word that is one.
    (["app", "--jwt", JWT], "app --jwt ***"),
    (["app", "--jwt-file=/run/secrets/t"], "app --jwt-file=***"),
    (["sh", "-c", f"echo {JWT} | jq -R ."], "sh -c echo *** | jq -R ."),
    (["curl", "-d", f'{{"id_token":"{JWT}"}}', "https://h"], 'curl -d {"id_token":"***"} https://h'),
    (["xdg-open", f"https://app.example.com/cb#id_token={JWT}&state=1"],
     "xdg-open https://app.example.com/cb#id_token=***&state=1"),
    # A flag whose value follows a colon.
    (["app", "--password:COLONPW", "--port", "80"], "app --password:*** --port 80"),
    (["app", "-apikey:COLONPW"], "app -apikey:***"),
    (["sh", "-c", "app --password:'two COLONPW' -v"], "sh -c app --password:'*** ***' -v"),
    # htpasswd's batch mode: its password is the last word (-n: no file).
    (["htpasswd", "-b", "file", "user", "HTPW"], "htpasswd -b file user ***"),
    (["htpasswd", "-bcB", "/etc/nginx/.htpasswd", "admin", "HTPW"], "htpasswd -bcB /etc/nginx/.htpasswd admin ***"),
    (["htpasswd", "-nb", "admin", "HTPW"], "htpasswd -nb admin ***"),
    (["htpasswd", "-bBC", "10", "file", "admin", "HTPW"], "htpasswd -bBC 10 file *** ***"),  # the cost shifts them
    (["sh", "-c", "htpasswd -b f u HTPW && nginx -g 'daemon off;'"], "sh -c htpasswd -b f u *** && nginx -g 'daemon off;'"),
    # openssl: -k and -K (enc), -pass/-passin/-passout's pass:...
    (["openssl", "enc", "-aes-256-cbc", "-k", "OSSLPW", "-in", "a", "-out", "b"],
     "openssl enc -aes-256-cbc -k *** -in a -out b"),
    (["openssl", "enc", "-aes-128-cbc", "-K", "00112233445566778899aabbccddeeff", "-iv", "00"],
     "openssl enc -aes-128-cbc -K *** -iv 00"),
    (["openssl", "enc", "-d", "-pass", "pass:OSSLPW"], "openssl enc -d -pass ***"),
    (["openssl", "pkcs12", "-export", "-passout", "pass:OSSLPW", "-out", "a.p12"],
     "openssl pkcs12 -export -passout *** -out a.p12"),
    # A secret-named key after config set: its value.
    (["aws", "configure", "set", "aws_secret_access_key", "AWSVAL"], "aws configure set aws_secret_access_key ***"),
    (["aws", "configure", "set", "default.aws_session_token", "AWSVAL", "--profile", "ci"],
     "aws configure set default.aws_session_token *** --profile ci"),
    (["npm", "config", "set", "//registry.example.com/:_authToken=NPMVAL"],
     "npm config set //registry.example.com/:_authToken=***"),
    (["redis-cli", "CONFIG", "SET", "requirepass", "REDISVAL"], "redis-cli CONFIG SET requirepass ***"),
    # A reviewer's gaps (session 51): PuTTY's -pw, consul's gossip key, pre-shared keys, HMAC keys, an
    # Authorization flag; tokens that say what they are wherever they stand; webhook URLs' paths.
    (["plink", "-pw", "PUTTYVAL", "host"], "plink -pw *** host"),
    (["consul", "agent", "-encrypt=CONSULVAL"], "consul agent -encrypt=***"),
    (["charon", "--psk", "PSKVAL"], "charon --psk ***"),
    (["signer", "--hmac", "HMACVAL", "--authorization", "AUTHVAL"], "signer --hmac *** --authorization ***"),
    (["gh", "repo", "list", "ghp_GHVALabcdefghijklmnopqrstu0123"], "gh repo list ***"),
    (["sh", "-c", "curl -u x:ghp_GHVALabcdefghijklmnopqrstu0123 https://h"], "sh -c curl -u x:*** https://h"),
    (["worker", "--stripe", "sk_live_STRIPEVALabcdef123"], "worker --stripe ***"),
    (["bot", "xoxb-SLACKVAL-1234567890"], "bot ***"),
    (["curl", "-d", "{}", "https://hooks.slack.com/services/T01/B02/HOOKVAL"],
     "curl -d {} https://hooks.slack.com/services/***"),
    (["curl", "https://discord.com/api/webhooks/123/DISCORDVAL"], "curl https://discord.com/api/webhooks/***"),
]

KEPT = [
    ["git", "clone", "https://github.com/ghost/repo", "--branch", "ghp-docs"],
    ["curl", "https://example.com/hooks/list"],
    ["nginx", "-g", "daemon off;"],
    ["kube-apiserver", "--authorization-mode=Node,RBAC", "--secure-port=6443", "--enable-admission-plugins=X"],
    ["curl", "-sS", "-o", "/srv/out", "-w", "%{http_code}", "https://example.com/api?page=2&limit=10"],
    ["curl", "-H", "Accept: application/json", "-H", "Content-Type: application/json", "https://h"],
    ["curl", "-u", "admin", "https://h"],  # curl asks for the password
    ["curl", "-H", "Authorization:", "https://h"],  # removes curl's own header: no value
    ["mysql", "-u", "root", "-p", "shop"],  # -p alone: mysql asks; shop is the database
    ["mysql", "-h", "db", "-P", "3306", "-u", "app", "shop"],
    ["redis-cli", "-h", "cache", "-p", "6379", "ping"],
    ["ssh", "-p", "2222", "admin@host"],
    ["git", "clone", "git@github.com:o/r.git"],
    ["git", "clone", "ssh://git@github.com/o/r.git"],
    ["kubeadm", "token", "create"],
    ["grep", "-rn", "token", "src/"],
    ["vault", "token", "lookup"],
    ["sshd:", "admin@pts/0"],
    ["node", "server.js", "--session-store", "redis", "--port", "3000"],
    ["docker", "run", "-p", "8080:80", "--name", "web", "mykey-service:latest"],
    ["curl", "http://host:8080/x?a=b@c"],
    ["curl", "-H", "X-Request-Id: 42", "https://h/key-rotation/status"],
    ["echo", "Authentication failed for user@example.com"],
    ["app", "--token"],  # a flag with no value: nothing to hide
    ["app", "--no-token-check", "--port", "80"],
    # A tool's name where no command stands is a name; a port mapping or a path is no password.
    ["docker", "run", "--name", "mongo", "-p", "27017:27017", "mongo:7"],
    ["docker", "run", "-v", "/a:/b", "-p3306:3306", "mysql:8"],
    ["docker", "run", "--name", "ldap", "-w", "/app", "osixia/openldap"],
    ["mongo-express", "-p", "8081"],
    ["sh", "-c", "exec mysql -h db -P 3306 -p shop"],
    ["mongosh", "-p", "/run/secrets/mongo-password"],
    ["curl", "-b", "/tmp/cookies.txt", "https://h"],
    ["docker", "run", "--name", "redis-cli", "-a", "stdout", "redis"],
    ["mosquitto_sub", "-h", "broker", "-p", "1883", "-t", "sensors/#"],
    # -p is the password of a registry login only; --password-stdin takes no value.
    ["docker", "run", "--name", "login", "-p", "8080", "quay.io/keycloak/keycloak"],
    ["docker", "run", "-p", "5000", "--name", "registry-login", "registry:2"],
    ["podman", "run", "-p", "8080", "login-page:1"],
    ["docker", "login", "-u", "ci", "--password-stdin", "ghcr.io"],
    ["openconnect", "--user=alice", "--passwd-on-stdin", "vpn.example.com"],
    ["sh", "-c", "echo login; docker run -p 8080 app"],
    ["/bin/login", "-p", "--", "alice"],
    ["skopeo", "inspect", "--creds", "ci", "docker://quay.io/o/app"],  # skopeo asks for the password
    # Without their passwords (the tool asks), or words that only look like them.
    ["smbclient", "-L", "//srv", "-U", "alice"],
    ["lftp", "-u", "alice", "sftp://h"],
    ["etcdctl", "--user", "root", "get", "/k"],
    ["ipmitool", "-p", "623", "-H", "bmc", "chassis", "status"],
    ["sqlplus", "/nolog"],
    ["sqlplus", "-s", "/", "@/opt/run.sql"],
    ["cp", "/p:x", "/gp:y"],  # FreeRDP's flags only
    ["xfreerdp", "/v:host", "/u:alice", "/cert:ignore"],
    ["mount", "-o", "rw,noatime,passno=2", "/dev/sda1", "/mnt"],
    ["http", "example.com", "Accept:application/json", "page==2"],
    # httpie's -a only: http-server's -a is its address, http.server a module.
    ["http-server", "-a", "0.0.0.0", "-p", "8080"],
    ["node", "/usr/local/bin/http-server", "-a", "127.0.0.1", "-p", "8080"],
    ["python3", "-m", "http.server", "-b", "0.0.0.0", "8000"],
    ["docker", "run", "--name", "http", "-a", "stdout", "nginx"],
    ["http", "--print=HBhb", "--auth-type", "digest", "https://h/status"],
    # Words shaped like user:password@host, a path's @, a JWT, config set, that are none.
    ["git", "clone", "git@gitlab.com:g/r.git"],
    ["scp", "a.txt", "user@host:/tmp/"],
    ["docker", "pull", "localhost:5000/app@sha256:" + "0" * 64],
    ["podman", "run", "nginx:1.25@sha256:" + "ab" * 32],
    ["npm", "view", "https://localhost:4873/@scope/pkg"],
    ["curl", "http://[::1]:8080/x@y"],
    ["linphonec", "-c", "sip:alice@example.com"],
    ["crond", "10:30@daily"],
    ["ls", "-l", "eyJfoo.json"],
    ["app", "--jwks-url=https://h/.well-known/jwks.json"],
    ["app", "--keepalive:30", "--log-level:debug"],
    ["htpasswd", "-c", "/etc/nginx/.htpasswd", "admin"],  # htpasswd asks
    ["htpasswd", "-v", "file", "admin"],
    ["openssl", "req", "-new", "-x509", "-days", "30", "-subj", "/CN=h"],  # -k is enc's, not -keyout's
    ["openssl", "s_client", "-connect", "h:443", "-servername", "h"],
    ["aws", "configure", "set", "region", "eu-west-1"],
    ["aws", "configure", "get", "aws_secret_access_key"],
    ["sh", "-c", "set -e; export MODE=prod"],
]


@pytest.mark.parametrize(("argv", "shown"), MASKED, ids=[" ".join(argv)[:60] for argv, _ in MASKED])
def test_secrets_are_masked(argv: list[str], shown: str) -> None:
    assert masked_cmdline(argv) == shown


@pytest.mark.parametrize("argv", KEPT, ids=[" ".join(argv)[:60] for argv in KEPT])
def test_what_is_not_secret_is_kept(argv: list[str]) -> None:
    assert masked_cmdline(argv) == " ".join(argv)


@pytest.mark.parametrize(("argv", "_"), MASKED, ids=[" ".join(argv)[:60] for argv, _ in MASKED])
def test_no_secret_value_is_left_anywhere(argv: list[str], _: str) -> None:
    """The values the table masks, whole, appear nowhere in the line shown."""
    shown = masked_cmdline(argv)
    assert MASK in shown
    for secret in ("hunter2", "hunter3", "Hunter2", "abc123secret", JWT, "ghp_16C7e42F", "glpat-", "zzz", "S3cret",
                   "changeit", "YWRtaW46", "AbC123xyz", "abc123", "correct", "staple", "DSNPW", "CLIPW", "pa/ss",
                   "pa#ss", "COLONPW", "HTPW", "OSSLPW", "00112233", "AWSVAL", "NPMVAL", "REDISVAL"):
        assert secret not in shown, shown


_100_KB = 100_000

LONG = [
    # Each pattern of the module over 100 KB of what it scans, with and
    # without what ends a match. Unanchored or with overlapping quantifiers,
    # the first two took 41 s and 61 s (a test never finished in time).
    (["app", "a" * _100_KB + "@"], None),
    (["app", "key" + ";" * _100_KB + "x"], None),
    (["app", "a-" * (_100_KB // 2) + "://"], None),
    (["app", "x://" + ":" * _100_KB + "@"], "app x://:***@"),
    (["app", "a://b:" + "@" * _100_KB], "app a://b:***@"),
    (["app", "http://" + "a" * _100_KB], None),
    (["app", "?" + "a" * _100_KB + "&token"], None),
    (["app", "?token=" * (_100_KB // 7)], "app ?token=***"),
    (["app", "--" + "a" * _100_KB + "key"], None),
    (["app", "-" * _100_KB + "key"], None),
    (["app", "a=" * (_100_KB // 2) + "key"], None),
    (["app", "key" + "=" * _100_KB], "app key==***"),
    (["app", "'" * _100_KB + "key" + "'" * _100_KB], None),
    (["curl", "-H", "X-Key:" + " " * _100_KB + "x"], "curl -H X-Key:" + " " * _100_KB + "***"),
    (["curl", "-H", "Authorization: Bearer" + " " * _100_KB + "x"],
     "curl -H Authorization: Bearer" + " " * _100_KB + "***"),
    (["curl", "-u", "a" + ":" * _100_KB], "curl -u a:***"),
    (["mysql", "-p" + "1" * _100_KB + ":"], "mysql -p***"),
    (["mysql", "-p" + "1." * (_100_KB // 2) + "x"], "mysql -p***"),
    (["sh", "-c", "key " * (_100_KB // 4)], None),
    (["sh", "-c", "mysql;" * (_100_KB // 6)], None),
    (["sh", "-c", "--password '" + "a " * (_100_KB // 2) + "'"],
     "sh -c --password '" + "*** " * (_100_KB // 2) + "'"),
    (["sh", "-c", "docker" + " -c x" * (_100_KB // 5) + " login -p x"],
     "sh -c docker" + " -c x" * (_100_KB // 5) + " login -p ***"),
    (["http", "-a", "a" + ":" * _100_KB], "http -a a:***"),
    (["sh", "-c", "http " * (_100_KB // 5)], None),
    (["sqlplus", "a" * _100_KB + "/"], None),
    (["sqlplus", "a/" * (_100_KB // 2)], "sqlplus a/***"),
    (["app", "a" * _100_KB + ",key=x"], "app " + "a" * _100_KB + ",key=***"),
    (["app", ",key" * (_100_KB // 4)], None),
    (["app", "key" + ",a" * (_100_KB // 2) + "="], None),
    # user:password@ in and out of URLs: the first @ a host follows, never past a ://.
    (["app", "a://a:" * (_100_KB // 6)], None),
    (["app", "a://b:" + "@a" * (_100_KB // 2)], "app a://b:***@a"),
    (["app", "a://b:" + "1" * _100_KB + "@"], "app a://b:***@"),
    (["app", "a://" + "a:" * (_100_KB // 2) + "@"], "app a://a:***@"),
    (["app", "a:" + "@" * _100_KB], "app a:***@"),
    (["app", "a:" + "@a" * (_100_KB // 2)], "app a:***@a"),
    (["app", "a:" + "://" * (_100_KB // 3) + "@"], None),
    (["app", "a:b@a:" + "0" * _100_KB], None),  # a digest's shape
    (["app", "a:b" + "@sha256:" * (_100_KB // 8)], "app a:***@sha256:"),
    (["app", "-" * _100_KB + "=a:b@c"], "app " + "-" * _100_KB + "=a:***@c"),
    (["app", "a=" * (_100_KB // 2) + ":b@c"], None),
    (["app", "a" * _100_KB + ":b@"], "app " + "a" * _100_KB + ":***@"),
    # JWTs, colon flags, htpasswd's and config set's words.
    (["app", "eyJ" * (_100_KB // 3)], None),
    (["app", "-eyJ" * (_100_KB // 4)], None),
    (["app", "eyJaaaaaaaa." + "a." * (_100_KB // 2)], "app ***." + "a." * (_100_KB // 2 - 2)),
    (["app", "--password:" + ":" * _100_KB], "app --password:***"),
    (["app", "-" * _100_KB + "password:x"], None),
    (["app", "--a" + "." * _100_KB + "key:"], None),
    (["sh", "-c", "htpasswd " + "-b " * (_100_KB // 3) + "f u pw"],
     "sh -c htpasswd " + "-b " * (_100_KB // 3) + "f u ***"),
    (["sh", "-c", "config set " * (_100_KB // 11)], None),
    (["sh", "-c", "openssl -k x " * (_100_KB // 13)], "sh -c " + "openssl -k *** " * (_100_KB // 13)),
]


@pytest.mark.parametrize(("argv", "shown"), LONG, ids=[" ".join(argv)[:30] for argv, _ in LONG])
def test_long_arguments_of_every_shape_are_masked(argv: list[str], shown: str | None) -> None:
    """Any local user can start a process with such arguments, and the probe
    masks every process's: a pattern retried from every position would stall
    every report (each of these runs in milliseconds; none is timed here)."""
    assert masked_cmdline(argv) == (" ".join(argv) if shown is None else shown)


@pytest.mark.parametrize(("argv", "limit", "kept"), [
    (["app", "--port", "80"], 13, ["app", "--port", "80"]),  # within the limit: as it is
    (["app", "--port", "8080"], 13, ["app", "--port"]),  # the argument past it: left out
    (["psql", "postgresql://u:hunter2@db/x"], 24, ["psql"]),  # a word cut in half: never shown
    (["sh", "-c", "psql postgresql://u:hunter2@db/x"], 24, ["sh", "-c", "psql"]),
    (["sh", "-c", "run --password 'correct horse battery staple'"], 40, ["sh", "-c", "run --password"]),
    (["curl", "-d", '{"user": "u", "password": "correct horse battery"}'], 48, ["curl", "-d", '{"user": "u", "password":']),
    (["sh", "-c", "echo 'a b' c " + "x" * 40], 40, ["sh", "-c", "echo 'a b' c"]),  # a quote closed: any words
    (["x" * 40], 32, []),
    # Cut just after a quoted value: not at a space of its own (the last space of all).
    (["curl", "-d", '{"password": "Zq9SECRET more words"' + " tail" * 20], 43, ["curl", "-d", '{"password":']),
    # An escaped quote closes nothing.
    (["curl", "-d", r'{"note": "say \" hi", "password": "Zq9 SECRET"}' + " tail" * 5], 54,
     ["curl", "-d", r'{"note": "say \" hi", "password":']),
])
def test_a_line_is_cut_for_masking_at_a_space_outside_quotes(argv: list[str], limit: int, kept: list[str]) -> None:
    assert cut_argv(argv, limit) == kept
    assert len(" ".join(kept)) <= limit


def test_no_secret_of_a_line_cut_anywhere_is_shown() -> None:
    argv = ["curl", "-H", "Authorization: Bearer abc.def", "-u", "user:pw", "https://u:pw2@h/x", "--data",
            '{"password": "correct horse"}', "y" * 99]
    for limit in range(len(" ".join(argv)) + 1):
        cut = masked_cmdline(cut_argv(argv, limit))
        assert "abc" not in cut and "pw" not in cut and "horse" not in cut, (limit, cut)


LONGER_LOWERCASE = [c for c in map(chr, range(0x110000)) if len(c.lower()) != 1]
"""Characters whose ``lower()`` is longer than they are (``İ``: an i and a combining dot)."""


@pytest.mark.parametrize("before", ["İ", "İ" * 9, "xİyİz" * 4, "İ\u212a" * 6, "".join(LONGER_LOWERCASE) * 9])
def test_a_secret_after_characters_whose_lowercase_is_longer_is_masked(before: str) -> None:
    """The hints were found in ``text.lower()`` at offsets of ``text``: each İ
    moved one into a later argument, and the secret after it was sent."""
    assert masked_cmdline(["app", f"--home=/home/{before}", "--password", "hunter2"]) == \
        f"app --home=/home/{before} --password ***"
    assert masked_cmdline(["sh", "-c", f"echo {before}; psql --password hunter2"]) == \
        f"sh -c echo {before}; psql --password ***"
    assert masked_variable("JAVA_OPTS", f"-Dcity={before} --password hunter2") == f"-Dcity={before} --password ***"
    assert masked_variable("OPTS", f"-Dcity={before}{before} --token=abc --x y") == \
        f"-Dcity={before}{before} --token=*** --x y"


def test_a_hint_in_characters_lower_makes_ascii_is_found_as_before() -> None:
    """The Kelvin sign's lowercase is k, and ``re.IGNORECASE`` reads it as k: a hint."""
    assert masked_cmdline(["app", "--api-\u212aey=x"]) == "app --api-\u212aey=***"
    assert masked_cmdline(["app", f"--city={'İ' * 4}", "--api-\u212aey", "x"]) == f"app --city={'İ' * 4} --api-\u212aey ***"
