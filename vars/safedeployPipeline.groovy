// The safedeploy pipeline as one step of a Jenkins shared library, so an app's Jenkinsfile is:
//
//     @Library('safedeploy') _
//     safedeployPipeline(productionLock: 'shop-production',
//                        setup: 'python3 -m venv .venv && .venv/bin/pip install -r requirements-dev.txt')
//
// gate-tests → deploy-staging → smoke-check staging (recorded) → promote, with the production
// lock held → smoke-check production (recorded); on failure, rollback and collect-logs. The
// safedeploy binaries must be installed on the agent (the .deb or tarball of scripts/package;
// see the README, "Install on a Jenkins agent"): nothing is built here.
//
// Options (all optional):
//   config          safedeploy.toml's path in the workspace            [safedeploy.toml]
//   stateDir        the ledger and platform state; outside the workspace, so a wipe keeps it
//                                          [the agent user's ~/.local/state/safedeploy/APP]
//   from, to        the environments promote reads and writes          [staging, production]
//   productionLock  the Lockable Resources lock held around promote    [JOB_NAME-production]
//   setup           a shell line run before the gate (a venv for the tests, say)  [none]
//   timeoutMinutes  the job's time limit; keep deploy timeouts below it [30]
//   notify          collect-logs posts its summary to Slack / Datadog  [false]
//
// Plugins: Pipeline, Pipeline: Shared Groovy Libraries, Git, JUnit, Lockable Resources,
// Timestamper.
// The argument is not named `options`: a local variable of that name would turn the `options { }`
// section below into a call of the map (Groovy calls a variable's call() when it has the name).
void call(Map given = [:]) {
    Map o = [
        config: 'safedeploy.toml',
        stateDir: '',
        from: 'staging',
        to: 'production',
        productionLock: "${env.JOB_NAME}-production",
        setup: '',
        timeoutMinutes: 30,
        notify: false,
    ] + given

    pipeline {
        agent any

        options {
            timestamps()
            disableConcurrentBuilds()
            timeout(time: o.timeoutMinutes, unit: 'MINUTES')
        }

        parameters {
            booleanParam(name: 'DRY_RUN', defaultValue: false,
                         description: 'Print every command and request; change nothing')
        }

        environment {
            // Empty: the tools' default, the agent user's ~/.local/state/safedeploy/APP.
            SAFEDEPLOY_STATE_DIR = "${o.stateDir}"
            SAFEDEPLOY_CONFIG = "${WORKSPACE}/${o.config}"
            SAFEDEPLOY_DRY_RUN = "${params.DRY_RUN}"
            SAFEDEPLOY_COLOR = 'never'
            SAFEDEPLOY_FROM = "${o.from}"
            SAFEDEPLOY_TO = "${o.to}"
            SAFEDEPLOY_NOTIFY = "${o.notify}"
            VERSION_LABEL = "build-${BUILD_NUMBER}"
        }

        stages {
            stage('Check tools and config') {
                steps {
                    sh 'safedeploy --version && safedeploy check --quiet'
                    script {
                        if (o.setup) {
                            sh o.setup
                        }
                    }
                }
            }
            stage('Gate: unit tests') {
                steps {
                    sh 'gate-tests --junit-out reports/gate-junit.xml'
                }
                post {
                    always {
                        junit allowEmptyResults: true, testResults: 'reports/*junit.xml'
                    }
                }
            }
            stage('Deploy staging') {
                steps {
                    sh '''deploy-staging --env "$SAFEDEPLOY_FROM" --version "$VERSION_LABEL" \\
                        --commit "$(git rev-parse HEAD)"'''
                }
            }
            stage('Smoke staging') {
                steps {
                    sh 'smoke-check --env "$SAFEDEPLOY_FROM" --expect-version "$VERSION_LABEL" --record'
                }
            }
            stage('Promote') {
                steps {
                    lock(resource: o.productionLock) {
                        sh 'promote --version "$VERSION_LABEL"'
                    }
                }
            }
            stage('Smoke production') {
                steps {
                    sh 'smoke-check --env "$SAFEDEPLOY_TO" --expect-version "$VERSION_LABEL" --record'
                }
            }
        }

        post {
            failure {
                // A no-op (exit 0) when production already runs its last known good version.
                sh 'rollback --env "$SAFEDEPLOY_TO" --reason "Jenkins $BUILD_TAG failed"'
                sh 'collect-logs --env "$SAFEDEPLOY_TO" --out error_hunt.txt'
                archiveArtifacts artifacts: 'error_hunt.txt', allowEmptyArchive: true
            }
        }
    }
}
