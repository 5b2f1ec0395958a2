fn main() {
    print!("{}", cloudphone_operator::api::crd_yaml());
}
