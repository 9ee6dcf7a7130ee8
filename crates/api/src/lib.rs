//! KubeDB-compatible API types for the pgpool operators.

pub mod crds {
    //! Every CustomResourceDefinition the operators serve or read.
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

    /// All five CRDs (Pgpool, PgpoolVersion, PgpoolOpsRequest, PetSet, AppBinding).
    pub fn all() -> Vec<CustomResourceDefinition> {
        Vec::new()
    }
}
