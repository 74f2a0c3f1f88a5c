//! Redaction on command lines written from the tools' documented usage.

use super::*;

/// Splits like a shell would for these simple lines: words, with '...' and
/// "..." quoting (no escapes needed here).
fn argv(line: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => current.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                in_word = true;
            }
            None if c == ' ' => {
                if in_word {
                    args.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            None => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        args.push(current);
    }
    args
}

fn redacted(line: &str) -> String {
    redact_args(&argv(line), &default_keys()).join(" ")
}

/// (command line, what it must read as). Sources: MySQL 8.0 Reference
/// Manual (mysql, mysqldump, mysqladmin options: `-p[password]`,
/// `--password[=password]`); sshpass(1); redis-cli docs (`-a <password>`);
/// mongosh and MongoDB Database Tools docs (`--password`); sqlcmd docs
/// (`-P password`); curl(1) (`-u user:password`, `-H header`); wget(1)
/// (`--http-password`, `--header`); docker login reference (`-p`); libpq
/// 34.1.1 connection strings; AWS CLI `configure set` reference and its
/// documented example keys (AKIAIOSFODNN7EXAMPLE); Azure Storage connection
/// strings and SAS docs; Google Maps API key usage (`&key=AIza...`); jwt.io's
/// example token; GitHub token formats; git clone over HTTPS.
const POSITIVES: &[(&str, &str)] = &[
    (
        "mysql -u root -pS3cretPass -h db.internal shop",
        "mysql -u root -p*** -h db.internal shop",
    ),
    (
        "/usr/bin/mysqldump --user=backup --password=Backup#2024 --all-databases",
        "/usr/bin/mysqldump --user=backup --password=*** --all-databases",
    ),
    (
        "mysqladmin -u root -pRootPw status",
        "mysqladmin -u root -p*** status",
    ),
    (
        "sudo -u app mariadb -papp-pw -e 'SELECT 1'",
        "sudo -u app mariadb -p*** -e SELECT 1",
    ),
    (
        "sshpass -p Tr0ub4dor ssh deploy@web1 uptime",
        "sshpass -p *** ssh deploy@web1 uptime",
    ),
    (
        "redis-cli -h cache -p 6379 -a r3disPw PING",
        "redis-cli -h cache -p 6379 -a *** PING",
    ),
    (
        "mongodump --username admin --password M0ngoPw --authenticationDatabase admin",
        "mongodump --username admin --password *** --authenticationDatabase admin",
    ),
    (
        "mongosh mongodb://admin:M0ngoPw@db1:27017/admin",
        "mongosh mongodb://admin:***@db1:27017/admin",
    ),
    (
        "sqlcmd -S tcp:db,1433 -U sa -P Sql$erverPw -Q 'SELECT 1'",
        "sqlcmd -S tcp:db,1433 -U sa -P *** -Q SELECT 1",
    ),
    (
        "docker login -u ci -p dockerPw registry.example.com",
        "docker login -u ci -p *** registry.example.com",
    ),
    (
        "curl -u alice:wonderland https://api.example.com/v1/me",
        "curl -u alice:*** https://api.example.com/v1/me",
    ),
    (
        "curl -sS -H 'Authorization: Bearer abc.def.ghi' https://api.example.com/",
        "curl -sS -H Authorization: Bearer *** https://api.example.com/",
    ),
    (
        "curl -H 'Authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l' https://api.example.com/",
        "curl -H Authorization: Basic *** https://api.example.com/",
    ),
    (
        "curl -H 'X-Api-Key: 0123456789abcdef' https://api.example.com/",
        "curl -H X-Api-Key: *** https://api.example.com/",
    ),
    (
        "curl -d '{\"username\":\"bob\",\"password\":\"hunter2\"}' https://api.example.com/login",
        "curl -d {\"username\":\"bob\",\"password\":\"***\"} https://api.example.com/login",
    ),
    (
        "wget --header='Authorization: Bearer xyz123' https://files.example.com/a.tgz",
        "wget --header=Authorization: Bearer *** https://files.example.com/a.tgz",
    ),
    (
        "wget --http-user=bob --http-password=BobPw https://files.example.com/a.tgz",
        "wget --http-user=bob --http-password=*** https://files.example.com/a.tgz",
    ),
    (
        "psql 'host=db port=5432 dbname=app user=app password=PgPw sslmode=require'",
        "psql host=db port=5432 dbname=app user=app password=*** sslmode=require",
    ),
    (
        "psql postgresql://app:PgPw@db:5432/app",
        "psql postgresql://app:***@db:5432/app",
    ),
    (
        "env AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY aws s3 ls",
        "env AWS_ACCESS_KEY_ID=*** AWS_SECRET_ACCESS_KEY=*** aws s3 ls",
    ),
    (
        "aws configure set aws_secret_access_key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "aws configure set aws_secret_access_key ***",
    ),
    (
        "aws configure set aws_access_key_id AKIAIOSFODNN7EXAMPLE",
        "aws configure set aws_access_key_id ***",
    ),
    (
        "curl https://maps.googleapis.com/maps/api/geocode/json?address=Berlin&key=AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
        "curl https://maps.googleapis.com/maps/api/geocode/json?address=Berlin&key=***",
    ),
    (
        "app --gcp-key AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
        "app --gcp-key ***",
    ),
    (
        "az storage blob list --container-name c --connection-string 'DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=Zm9vYmFyYmF6cXV4==;EndpointSuffix=core.windows.net'",
        "az storage blob list --container-name c --connection-string DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=***;EndpointSuffix=core.windows.net",
    ),
    (
        "az storage blob list --account-name acct --account-key Zm9vYmFyYmF6cXV4==",
        "az storage blob list --account-name acct --account-key ***",
    ),
    (
        "azcopy copy ./f 'https://acct.blob.core.windows.net/c/f?sv=2022-11-02&ss=b&sp=rw&sig=abc%2Fdef%3D'",
        "azcopy copy ./f https://acct.blob.core.windows.net/c/f?sv=2022-11-02&ss=b&sp=rw&sig=***",
    ),
    (
        "java -jar client.jar eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        "java -jar client.jar ***",
    ),
    (
        "git clone https://ghp_16C7e42F292c6912E7710c838347Ae178B4a@github.com/org/repo.git",
        "git clone https://***@github.com/org/repo.git",
    ),
    (
        "git clone https://x-access-token:ghs_16C7e42F292c6912E7710c838347Ae178B4a@github.com/org/repo.git",
        "git clone https://x-access-token:***@github.com/org/repo.git",
    ),
    (
        "runner --github github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "runner --github ***",
    ),
    (
        "docker run -e MYSQL_ROOT_PASSWORD=rootpw -e STRIPE_KEY=sk_live_abc -p 3306:3306 mysql:8",
        "docker run -e MYSQL_ROOT_PASSWORD=*** -e STRIPE_KEY=*** -p 3306:3306 mysql:8",
    ),
    (
        "app --env=SMTP_PASS=mailpw --client-secret s3cr3t",
        "app --env=SMTP_PASS=*** --client-secret ***",
    ),
    (
        "vault write pki/config/ca pem_bundle='-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----'",
        "vault write pki/config/ca pem_bundle=***",
    ),
    (
        "sh -c 'curl -H \"Authorization: Bearer tok123\" https://x.example.com && mysql -pX'",
        "sh -c curl -H \"Authorization: Bearer ***\" https://x.example.com && mysql -pX",
    ),
];

/// Ordinary command lines that must come out unchanged.
const NEGATIVES: &[&str] = &[
    "psql -h db -p 5432 -U app app",
    "ssh -p 2222 deploy@web1",
    "mysql -u root -p shop",
    "mysql -u root -h db -P 3306 --protocol=tcp shop",
    "docker run -p 8080:80 -e LOG_LEVEL=debug nginx:1.25",
    "docker login --password-stdin -u ci registry.example.com",
    "curl -H 'Content-Type: application/json' -d @body.json https://api.example.com/v1/items",
    "curl -u alice https://api.example.com/",
    "git clone git@github.com:org/repo.git",
    "java -Xmx512m -Dspring.profiles.active=prod -jar app.jar",
    "sort --key=2 -t, data.csv",
    "grep -rn TODO src/",
    "nginx -g 'daemon off;'",
    "python3 -m http.server 8000",
    "redis-server --port 6379",
    "wget https://example.com/a@b",
    "env MONKEY=1 LANG=C.UTF-8 make -j4",
    "tar -xzf backup.tar.gz -C /srv",
    "kubectl get pods -n kube-system -o wide",
    "postgres -D /var/lib/postgresql/data -c shared_buffers=128MB",
    "node --max-old-space-size=4096 server.js",
    "git checkout 3f2a9c1e5b7d4a6c8e0f1a2b3c4d5e6f7a8b9c0d",
    "app --db-password-file /run/secrets/db",
    "curl https://example.com:8443/path?page=2&sort=asc",
    "helm upgrade --install web ./chart --set image.tag=v1.2.3",
];

#[test]
fn redacts_real_command_lines() {
    let mut failures = Vec::new();
    for (line, want) in POSITIVES {
        let got = redacted(line);
        if got != *want {
            failures.push(format!("{line}\n   got: {got}\n  want: {want}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn leaves_ordinary_command_lines_alone() {
    let mut failures = Vec::new();
    for line in NEGATIVES {
        let want = argv(line).join(" ");
        let got = redacted(line);
        if got != want {
            failures.push(format!("{line}\n   got: {got}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_shape_compiles() {
    assert_eq!(SHAPES.each.len(), 12);
    assert_eq!(SHAPES.any.len(), 12);
}

#[test]
fn a_trailing_secret_flag_is_harmless() {
    for line in ["x --password", "sshpass -p", "mysql -p", "curl -u"] {
        assert_eq!(redacted(line), argv(line).join(" "), "{line}");
    }
}

#[test]
fn configured_keys_apply_to_names() {
    let keys = vec!["pin".to_string()];
    assert_eq!(
        redact_args(&argv("app --pin 1234 --sim-pin=5678"), &keys).join(" "),
        "app --pin *** --sim-pin=***"
    );
}

/// Log text (export errors) loses credentials in URLs and headers.
#[test]
fn log_text_is_masked() {
    let message = "error sending request for url (https://user:hunter2@collector:4318/v1/logs): \
                   Authorization: Bearer abc123 refused";
    let masked = redact_text(message);
    assert!(
        !masked.contains("hunter2") && !masked.contains("abc123"),
        "{masked}"
    );
    assert!(
        masked.contains("https://user:***@collector:4318/v1/logs"),
        "{masked}"
    );
    assert!(matches!(redact_text("nothing to see"), Cow::Borrowed(_)));
}

/// No code opens another process's environment (`/proc/PID/environ`, or
/// procfs's `Process::environ`): secrets in environment variables stay
/// where they are. This file, which names them, is not scanned.
#[test]
fn no_code_reads_another_process_environment() {
    let forbidden = [
        format!("/{}", "environ"),
        format!(".{}(", "environ"),
        format!("\"{}\"", "environ"),
    ];
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut pending = vec![root];
    let mut scanned = 0;
    let mut found = Vec::new();
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.ends_with("redact/tests.rs")
            {
                let text = std::fs::read_to_string(&path).expect("read");
                scanned += 1;
                for (n, line) in text.lines().enumerate() {
                    if forbidden.iter().any(|f| line.contains(f.as_str())) {
                        found.push(format!("{}:{}: {line}", path.display(), n + 1));
                    }
                }
            }
        }
    }
    assert!(scanned > 100, "scanned only {scanned} files");
    assert!(found.is_empty(), "{}", found.join("\n"));
}
